"""Generate DKIM keys, check their DNS records, and switch signing to a key once DNS has it."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from directory.models import Domain
from mailkit import dns, domainkeys

from .models import DkimKey


def selector_for(domain: Domain, algorithm: str, today: date) -> str:
    """``sg20261130`` (RSA) or ``sg20261130e`` (Ed25519); ``-2``, ``-3`` when generated again the
    same day. A date makes it obvious in DNS which record is the newer one."""
    base = f"sg{today:%Y%m%d}" + ("e" if algorithm == DkimKey.Algorithm.ED25519 else "")
    taken = set(
        domain.dkim_keys.filter(selector__startswith=base).values_list("selector", flat=True)
    )
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


def generate_key(domain: Domain, algorithm: str = DkimKey.Algorithm.RSA) -> DkimKey:
    """A new key for ``domain``, waiting for its DNS record; signing starts after the check."""
    pair = domainkeys.generate(domainkeys.Algorithm(algorithm))
    for _attempt in range(5):  # two admins generating at the same moment get different selectors
        selector = selector_for(domain, algorithm, timezone.localdate())
        try:
            with transaction.atomic():
                return DkimKey.objects.create(
                    domain=domain,
                    selector=selector,
                    algorithm=algorithm,
                    private_key=pair.private_key,
                    public_key=pair.public_key,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not find a free DKIM selector for {domain.name}")


def check_dns(key: DkimKey, resolver: dns.Resolver | None = None) -> bool:
    """Look the key's record up; a waiting key whose record matches becomes the signing key.

    Returns whether the published record matches. The sentence for the admin is saved on the key.
    """
    lookup = dns.txt_records(key.record_name, resolver)
    names = {"name": key.record_name}
    matches = False
    if lookup.status == dns.Status.UNKNOWN:
        result = _("DNS did not answer for %(name)s; try again in a moment.") % names
    elif lookup.status == dns.Status.MISSING:
        result = (
            _(
                "No TXT record at %(name)s yet. Publish the record below; DNS changes can take a "
                "while to appear."
            )
            % names
        )
    elif len(lookup.values) > 1:
        result = (
            _(
                "%(name)s has several TXT records; receivers may pick any of them. Keep only the "
                "record below."
            )
            % names
        )
    else:
        matches = domainkeys.published_key_matches(
            lookup.values, domainkeys.Algorithm(key.algorithm), key.public_key
        )
        if matches:
            result = _("The record at %(name)s matches this key.") % names
        else:
            result = (
                _(
                    "The record at %(name)s does not carry this key. Replace it with the record "
                    "below."
                )
                % names
            )
    key.checked_at = timezone.now()
    key.check_result = result
    if lookup.status != dns.Status.UNKNOWN:  # "DNS did not answer" proves nothing either way
        key.published = matches
    key.save(update_fields=["checked_at", "check_result", "published"])
    if matches and key.state == DkimKey.State.WAITING:
        key.activate()
    return matches
