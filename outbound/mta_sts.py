"""Which MTA-STS policy governs direct delivery to a recipient domain (RFC 8461 5)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mailkit import dns
from mailkit.mta_sts import Mode, Policy, PolicyError, PolicyFetcher, announcement
from mailkit.netguard import parse_networks

from .models import MtaStsPolicy

log = logging.getLogger(__name__)

# After a failed fetch (and no cached policy), deliver as without MTA-STS and try again after this.
FAILED_FETCH_RETRY_SECONDS = 300


def default_fetcher() -> PolicyFetcher:
    """Port 443 and the system resolver, through the SSRF guard with the operator's networks."""
    return PolicyFetcher(
        allowed_networks=parse_networks(settings.SENDGATE_SMTP_ALLOWED_NETWORKS),
        extra_ca_file=settings.SENDGATE_EXTRA_CA_FILE,
        timeout=settings.SENDGATE_MTA_STS_TIMEOUT,
    )


def policy_for(
    domain: str, resolver: dns.Resolver | None = None, fetcher: PolicyFetcher | None = None
) -> Policy | None:
    """The policy to apply to ``domain`` now; None (or mode none) means deliver as without it.

    The cached policy stands while it has not expired and the TXT record announces the same id
    (or cannot be read: an attacker who blocks DNS must not switch the policy off). A new id
    means a fetch; a failed fetch falls back to the cached policy, else to none (RFC 8461 5.1).
    """
    if not settings.SENDGATE_MTA_STS:
        return None
    now = timezone.now()
    cached = MtaStsPolicy.objects.filter(domain=domain, expires_at__gt=now).first()
    announced = announcement(domain, resolver)
    if announced.status != dns.Status.FOUND or (
        cached is not None and cached.policy_id == announced.policy_id
    ):
        return cached.policy() if cached else None
    try:
        policy = (fetcher or default_fetcher()).fetch(domain)
    except PolicyError as exc:
        log.warning("MTA-STS policy of %s unusable: %s", domain, exc)
        if cached:
            return cached.policy()
        # Remember the failure for a few minutes as "no policy" (what a failed fetch means,
        # RFC 8461 5.1), so a dead policy host costs one time-out, not one per message.
        policy = Policy(mode=Mode.NONE, mx=(), max_age=FAILED_FETCH_RETRY_SECONDS)
    MtaStsPolicy.objects.update_or_create(
        domain=domain,
        defaults={
            "policy_id": announced.policy_id,
            "mode": policy.mode.value,
            "mx": list(policy.mx),
            "max_age": policy.max_age,
            "fetched_at": now,
            "expires_at": now + timedelta(seconds=policy.max_age),
        },
    )
    return policy
