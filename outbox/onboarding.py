"""Running an organisation: add and remove domains, add, invite, deactivate and reactivate accounts.

The console pages and the `domain` and `account` commands call these functions, so both follow the
same rules and give the same errors. This sits in the outbox, not in the directory: invitations and
reset links are mail, deactivation holds queued mail, and a new domain needs its policy record;
the directory, below policy and the outbox, can import none of them.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import formataddr

from celery import current_app
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import DomainNameValidator
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from directory.account_import import ImportPlan
from directory.accounts import DirectoryError, clean_display_name, new_address
from directory.models import Account, AccountImport, AuditEvent, Domain, OrgUnit
from policy.models import OutboundPolicy

from .models import Message
from .notices import build_notice, send_to_sender
from .queue import wake_up

# --- links ----------------------------------------------------------------------------------------


def set_password_link(account: Account) -> str:
    """A one-time link to choose a password (Django's reset tokens: it stops working once the
    password changes, or after PASSWORD_RESET_TIMEOUT, 72 hours)."""
    uid = urlsafe_base64_encode(force_bytes(account.pk))
    token = default_token_generator.make_token(account)
    path = reverse("set_password", kwargs={"uidb64": uid, "token": token})
    return settings.SENDGATE_CONSOLE_URL.rstrip("/") + path


def _hours() -> int:
    return settings.PASSWORD_RESET_TIMEOUT // 3600


def send_invitation(account: Account, actor: Account | None, *, audit: bool = True) -> Message:
    """Mail the account a set-password link, through its domain's path; audited (an import
    records one event for all its accounts instead)."""
    if not account.is_active:
        raise DirectoryError(
            _("%(address)s is deactivated: reactivate it first.") % {"address": account.email}
        )
    assert account.domain is not None  # invitations go to the accounts of a domain
    body = _(
        "Hello %(name)s,\n\n"
        "An account for %(address)s has been created for you on Sendgate, the mail service of "
        "%(domain)s.\n\n"
        "Choose your password here:\n%(link)s\n\n"
        "The link works once and expires in %(hours)s hours. Then log in at %(console)s with "
        "your address and the password you chose."
    ) % {
        "name": account.display_name or account.email,
        "address": account.email,
        "domain": account.domain.name,
        "link": set_password_link(account),
        "hours": _hours(),
        "console": settings.SENDGATE_CONSOLE_URL,
    }
    subject = _("Your Sendgate account %(address)s") % {"address": account.email}
    notice = build_notice(account, subject, body)
    _address_to(notice, account)
    with transaction.atomic():
        message = send_to_sender(account, notice)
        if audit:
            AuditEvent.record(
                account.domain, actor, AuditEvent.Action.INVITATION_SENT, account.email
            )
    return message


def send_password_reset(account: Account, actor: Account | None = None) -> Message:
    """Mail a reset link. ``actor`` is the admin who asked; None when the user asked."""
    body = _(
        "Someone asked to reset the password of %(address)s on Sendgate.\n\n"
        "Choose a new password here:\n%(link)s\n\n"
        "The link works once and expires in %(hours)s hours. If you did not ask for this, ignore "
        "this message: your password stays as it is."
    ) % {"address": account.email, "link": set_password_link(account), "hours": _hours()}
    subject = _("Reset your Sendgate password")
    notice = build_notice(account, subject, body)
    _address_to(notice, account)
    with transaction.atomic():
        message = send_to_sender(account, notice)
        if actor is not None:
            assert account.domain is not None  # an admin acts on the accounts of its domain
            AuditEvent.record(
                account.domain, actor, AuditEvent.Action.PASSWORD_RESET_SENT, account.email
            )
    return message


def _address_to(notice, account: Account) -> None:
    if account.display_name:
        notice.replace_header("To", formataddr((account.display_name, account.email)))


# --- domains --------------------------------------------------------------------------------------


def clean_domain_name(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    try:
        DomainNameValidator(accept_idna=False)(name)
    except ValidationError:
        raise DirectoryError(
            _("%(name)s is not a domain name such as example.org.") % {"name": value.strip()}
        ) from None
    if "." not in name:
        raise DirectoryError(
            _("%(name)s is not a domain name such as example.org.") % {"name": value.strip()}
        )
    if Domain.objects.filter(name=name).exists():
        raise DirectoryError(_("%(name)s is already hosted here.") % {"name": name})
    return name


def create_domain(
    name: str,
    admin_address: str,
    *,
    verified: bool,
    actor: Account | None = None,
    admin_name: str = "",
    password: str | None = None,
) -> tuple[Domain, Account]:
    """Create a domain with its top OU, its policy record (per-user gateways denied) and its
    first admin. Unverified unless the operator vouches: it cannot send until its TXT record is
    found. Without ``password`` the admin has none yet (send or print a set-password link)."""
    name = clean_domain_name(name)
    with transaction.atomic():
        domain = Domain.objects.create(name=name, verified_at=timezone.now() if verified else None)
        OrgUnit.objects.create(domain=domain, name=name)
        OutboundPolicy.objects.create(domain=domain, allow_user_gateways=False)
        address = new_address(domain, admin_address)
        admin = Account.objects.create_user(
            address, password, domain=domain, display_name=clean_display_name(admin_name)
        )
        domain.admins.add(admin)
        AuditEvent.record(
            domain,
            actor,
            AuditEvent.Action.DOMAIN_ADDED,
            name,
            _("first admin %(address)s") % {"address": address},
        )
    return domain, admin


def queued_count(domain: Domain) -> int:
    return Message.objects.waiting().filter(account__domain=domain).count()


# --- accounts -------------------------------------------------------------------------------------


def add_account(
    domain: Domain,
    address: str,
    name: str = "",
    unit: OrgUnit | None = None,
    actor: Account | None = None,
    *,
    invite: bool = True,
    password: str | None = None,
) -> Account:
    """Create an account of ``domain`` in ``unit`` (default: the top OU) and, unless it got a
    password, mail it an invitation; audited. Raises DirectoryError with the reason."""
    address = new_address(domain, address)
    unit = unit or domain.root_unit
    if unit.domain_id != domain.pk:
        raise DirectoryError(_("That OU is not part of %(domain)s.") % {"domain": domain.name})
    with transaction.atomic():
        try:
            account = Account.objects.create_user(
                address,
                password,
                domain=domain,
                org_unit=unit,
                display_name=clean_display_name(name),
            )
        except IntegrityError:  # created meanwhile by someone else
            raise DirectoryError(
                _("%(address)s already has an account.") % {"address": address}
            ) from None
        AuditEvent.record(domain, actor, AuditEvent.Action.ACCOUNT_ADDED, address, unit.path())
        if invite and password is None:
            send_invitation(account, actor)
    return account


def import_accounts(
    plan: ImportPlan, actor: Account | None, *, invite: bool = True
) -> AccountImport:
    """Create every account of a checked CSV plan in one transaction: all or nothing.

    Invitations follow in the background, in batches (``send_import_invitations``): 50,000 mails
    would outlast a web request; the import page shows their progress.
    """
    if plan.errors:
        raise DirectoryError(_("The file has errors; nothing was imported."))
    domain = plan.domain
    with transaction.atomic():
        job = AccountImport.objects.create(
            domain=domain,
            actor=actor,
            filename=plan.filename[:200],
            total=len(plan.rows),
            invite=invite,
            finished_at=None if invite else timezone.now(),
        )
        values = {
            pk: (allowed, version)
            for pk, allowed, version in OrgUnit.objects.filter(domain=domain).values_list(
                "pk", "gateways_allowed", "policy_version"
            )
        }
        accounts = []
        for row in plan.rows:
            allowed, version = values[row.unit_id]
            account = Account(
                email=row.address,
                display_name=row.name,
                domain=domain,
                org_unit_id=row.unit_id,
                gateways_allowed=allowed,
                policy_version=version,
                imported_by=job,
            )
            account.set_unusable_password()
            accounts.append(account)
        try:
            with transaction.atomic():
                Account.objects.bulk_create(accounts, batch_size=2000)
        except IntegrityError:
            raise DirectoryError(
                _("Some of these addresses got accounts meanwhile; check the file again.")
            ) from None
        AuditEvent.record(
            domain,
            actor,
            AuditEvent.Action.ACCOUNTS_IMPORTED,
            plan.filename,
            ngettext("%(count)d account", "%(count)d accounts", len(accounts))
            % {"count": len(accounts)},
        )
        if invite:
            transaction.on_commit(lambda: current_app.send_task(INVITATIONS_TASK, args=[job.pk]))
    return job


INVITATIONS_TASK = "outbox.tasks.send_import_invitations"
INVITATION_BATCH = 500


def send_import_invitations(job_id: int, batch_size: int = INVITATION_BATCH) -> None:
    """Invite an import's accounts batch by batch; resumable, and safe to run twice.

    Each batch commits its mails together with the cursor, moved by a conditional UPDATE: if
    another run moved it first, this batch rolls back, so no account is invited twice.
    """
    while True:
        job = AccountImport.objects.filter(pk=job_id, finished_at__isnull=True).first()
        if job is None:
            return
        with transaction.atomic():
            accounts = list(
                Account.objects.filter(imported_by=job, pk__gt=job.cursor_pk, is_active=True)
                .select_related("domain")
                .order_by("pk")[:batch_size]
            )
            if not accounts:
                AccountImport.objects.filter(pk=job.pk, cursor_pk=job.cursor_pk).update(
                    finished_at=timezone.now(), updated_at=timezone.now()
                )
                return
            for account in accounts:
                send_invitation(account, job.actor, audit=False)
            moved = AccountImport.objects.filter(pk=job.pk, cursor_pk=job.cursor_pk).update(
                cursor_pk=accounts[-1].pk,
                invited=F("invited") + len(accounts),
                updated_at=timezone.now(),
            )
            if moved != 1:
                transaction.set_rollback(True)  # another run sent this batch
                return


def stalled_import_ids(minutes: int = 5) -> list[int]:
    """Imports whose invitations stopped (a lost task, a killed worker), for beat to resume."""
    since = timezone.now() - timedelta(minutes=minutes)
    return list(
        AccountImport.objects.filter(
            invite=True, finished_at__isnull=True, updated_at__lt=since
        ).values_list("pk", flat=True)
    )


def deactivate(account: Account, actor: Account | None) -> int:
    """Refuse the account's logins from now on and hold its unsent mail; returns how many
    messages are held. Open console sessions end at their next request (Django checks
    ``is_active``); app passwords stop working at the next login."""
    if actor is not None and actor.pk == account.pk:
        raise DirectoryError(_("You cannot deactivate your own account."))
    domain = account.domain
    with transaction.atomic():
        if (
            domain is not None
            and domain.admins.filter(pk=account.pk).exists()
            and not domain.admins.filter(is_active=True).exclude(pk=account.pk).exists()
        ):
            raise DirectoryError(
                _("%(address)s is the last admin of %(domain)s: make someone else an admin first.")
                % {"address": account.email, "domain": domain.name}
            )
        changed = Account.objects.filter(pk=account.pk, is_active=True).update(is_active=False)
        held = (
            Message.objects.for_sender(account)
            .filter(state__in=[Message.State.QUEUED, Message.State.DEFERRED])
            .update(state=Message.State.HELD)
        )
        if changed and domain is not None:  # the audit log is a domain's
            AuditEvent.record(
                domain,
                actor,
                AuditEvent.Action.ACCOUNT_DEACTIVATED,
                account.email,
                (
                    ngettext("%(count)d message held", "%(count)d messages held", held)
                    % {"count": held}
                    if held
                    else ""
                ),
            )
    account.is_active = False
    return held


def reactivate(account: Account, actor: Account | None) -> bool:
    """Let the account log in again. Its held mail stays held until an admin decides."""
    with transaction.atomic():
        changed = Account.objects.filter(pk=account.pk, is_active=False).update(is_active=True)
        if changed:
            assert account.domain is not None  # an admin acts on the accounts of its domain
            AuditEvent.record(
                account.domain, actor, AuditEvent.Action.ACCOUNT_REACTIVATED, account.email
            )
    account.is_active = True
    return bool(changed)


def held_mail(account: Account):
    return Message.objects.for_sender(account).filter(state=Message.State.HELD)


def release_held(account: Account, actor: Account | None) -> int:
    """Deliver the account's held mail after all; audited."""
    with transaction.atomic():
        ids = list(held_mail(account).values_list("pk", flat=True))
        Message.objects.filter(pk__in=ids, state=Message.State.HELD).update(
            state=Message.State.QUEUED, next_attempt_at=timezone.now()
        )
        if ids:
            assert account.domain is not None  # an admin acts on the accounts of its domain
            AuditEvent.record(
                account.domain,
                actor,
                AuditEvent.Action.HELD_MAIL_RELEASED,
                account.email,
                ngettext("%(count)d message", "%(count)d messages", len(ids)) % {"count": len(ids)},
            )
            # The sweeper would find them too; this wake-up saves its interval.
            transaction.on_commit(wake_up, robust=True)
    return len(ids)


def discard_held(account: Account, actor: Account | None) -> int:
    """Give up the account's held mail: it is marked failed and never sent; audited."""
    reply = _("Discarded by an administrator after the account was deactivated.")
    with transaction.atomic():
        count = held_mail(account).update(state=Message.State.FAILED, last_reply=reply)
        if count:
            assert account.domain is not None  # an admin acts on the accounts of its domain
            AuditEvent.record(
                account.domain,
                actor,
                AuditEvent.Action.HELD_MAIL_DISCARDED,
                account.email,
                ngettext("%(count)d message", "%(count)d messages", count) % {"count": count},
            )
    return count
