"""The directory's own rules for accounts: which addresses a domain may have, OUs by path, admins.

Everything here reads and writes only directory rows. Lifecycle steps that also mail someone or
touch queued mail (invitations, deactivation) are in ``outbox/onboarding.py``, built on these.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from mailkit.addresses import domain_of, normalize_address

from .models import Account, AuditEvent, Domain, OrgUnit


class DirectoryError(ValueError):
    """A request the directory refuses, with the sentence to show (console) or print (CLI)."""


def new_address(domain: Domain, value: str, *, check_existing: bool = True) -> str:
    """The normalized address for a new account of ``domain``, or DirectoryError saying why not."""
    try:
        address = normalize_address(value)
    except ValidationError as exc:
        raise DirectoryError(
            _("%(value)s is not a valid address: %(reason)s")
            % {"value": value.strip(), "reason": " ".join(exc.messages)}
        ) from None
    if domain_of(address) != domain.name:
        raise DirectoryError(
            _("%(address)s is not in %(domain)s.") % {"address": address, "domain": domain.name}
        )
    # Addresses are unique whatever their case: Ann@ and ann@ reach the same mailbox.
    if check_existing and Account.objects.filter(email__iexact=address).exists():
        raise DirectoryError(_("%(address)s already has an account.") % {"address": address})
    return address


def clean_display_name(value: str) -> str:
    name = " ".join(value.split())  # no line breaks or tabs: it goes into From headers
    if len(name) > 200:
        raise DirectoryError(_("The name is longer than 200 characters."))
    return name


def unit_by_path(domain: Domain, path: str) -> OrgUnit:
    """The OU named ``Sales/EMEA`` (or ``example.com/Sales/EMEA``); empty means the top OU."""
    wanted = path.strip().strip("/")
    if wanted == domain.name or wanted.startswith(f"{domain.name}/"):
        wanted = wanted[len(domain.name) :].strip("/")
    full = f"{domain.name}/{wanted}" if wanted else domain.name
    for pk, unit_path in OrgUnit.objects.paths(domain.pk).items():
        if unit_path == full:
            return OrgUnit.objects.get(pk=pk)
    raise DirectoryError(
        _("%(domain)s has no OU %(path)s.") % {"domain": domain.name, "path": path}
    )


def account_of(domain: Domain, address: str) -> Account:
    account = Account.objects.filter(domain=domain, email__iexact=address.strip()).first()
    if account is None:
        raise DirectoryError(
            _("No account %(address)s in %(domain)s.")
            % {"address": address.strip(), "domain": domain.name}
        )
    return account


def grant_admin(domain: Domain, account: Account, actor: Account | None) -> bool:
    """Make ``account`` an admin of ``domain``; False when it already was one."""
    if account.domain_id != domain.pk:
        raise DirectoryError(
            _("Only accounts of %(domain)s can administer it.") % {"domain": domain.name}
        )
    if not account.is_active:
        raise DirectoryError(
            _("%(address)s is deactivated: reactivate it first.") % {"address": account.email}
        )
    with transaction.atomic():
        if domain.admins.filter(pk=account.pk).exists():
            return False
        domain.admins.add(account)
        AuditEvent.record(domain, actor, AuditEvent.Action.ADMIN_GRANTED, account.email)
    return True


def revoke_admin(domain: Domain, account: Account, actor: Account | None) -> bool:
    """Take admin rights away; a domain always keeps at least one active admin."""
    with transaction.atomic():
        # Lock the domain row: two admins revoking each other at once must not both succeed.
        Domain.objects.select_for_update().filter(pk=domain.pk).first()
        if not domain.admins.filter(pk=account.pk).exists():
            return False
        if not domain.admins.filter(is_active=True).exclude(pk=account.pk).exists():
            raise DirectoryError(
                _("%(address)s is the last admin of %(domain)s: make someone else an admin first.")
                % {"address": account.email, "domain": domain.name}
            )
        domain.admins.remove(account)
        AuditEvent.record(domain, actor, AuditEvent.Action.ADMIN_REVOKED, account.email)
    return True
