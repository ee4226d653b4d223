"""Accepting a message: validate, build it, commit it to the outbox, then wake a worker."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from functools import cache

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from directory.models import Account
from gateways.models import SendAsAlias
from mailkit.addresses import domain_of, normalize_address, reject_control_characters
from outbox import rows
from outbox.models import Message
from outbox.queue import queue


def sendable_addresses(account: Account) -> list[tuple[str, str]]:
    """(address, display name) pairs this account may use as From: primary first, then aliases."""
    verified = rows.fetch_all(_verified_aliases_sql(), [account.pk, SendAsAlias.State.VERIFIED])
    return [(account.email, account.display_name), *verified]


# Written out: a submission session reads it at login and every few seconds, and compiling it
# through the ORM cost more than running it.
@cache
def _verified_aliases_sql() -> str:
    account, state = rows.column(SendAsAlias, "account"), rows.column(SendAsAlias, "state")
    address, name = rows.column(SendAsAlias, "address"), rows.column(SendAsAlias, "display_name")
    is_default = rows.column(SendAsAlias, "is_default")
    return (
        f"SELECT {address}, {name} FROM {rows.table(SendAsAlias)}"  # noqa: S608 - model names
        f" WHERE {account} = %s AND {state} = %s ORDER BY {is_default} DESC"
    )


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def accept_message(
    account: Account,
    from_address: str,
    recipients: list[str],
    subject: str,
    body: str,
    attachments: Sequence[Attachment] = (),
) -> Message:
    """Build and queue a message; on bad input raise ValidationError and store nothing."""
    if account.domain is not None and not account.domain.is_verified:
        raise ValidationError(
            _(
                "%(domain)s has not proved it owns its domain name yet, so it cannot send. Its "
                "administrator must publish the verification DNS record first."
            )
            % {"domain": account.domain.name}
        )
    from_address = normalize_address(from_address)
    names = dict(sendable_addresses(account))
    if from_address not in names:
        raise ValidationError(
            {"from_address": _("You may not send as %(address)s.") % {"address": from_address}}
        )
    if not recipients:
        raise ValidationError({"to": _("Enter at least one recipient.")})
    recipients = [normalize_address(r) for r in recipients]
    reject_control_characters(subject)
    alias = account.aliases.filter(address=from_address).first()

    email = EmailMessage(policy=SMTP)
    email["From"] = formataddr((names[from_address], from_address))
    email["To"] = ", ".join(recipients)
    email["Subject"] = subject
    email["Date"] = format_datetime(timezone.now())
    email["Message-ID"] = make_msgid(domain=domain_of(from_address))
    if alias is not None and alias.reply_to:
        email["Reply-To"] = alias.reply_to
    email.set_content(body)
    for attachment in attachments:
        maintype, _slash, subtype = attachment.content_type.partition("/")
        if not subtype or _FORBIDDEN_IN_TYPE.search(attachment.content_type):
            maintype, subtype = "application", "octet-stream"
        email.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=_safe_filename(attachment.filename),
        )
    return queue(account, from_address, recipients, subject, email["Message-ID"], email.as_bytes())


_FORBIDDEN_IN_TYPE = re.compile(r"[^A-Za-z0-9!#$&^_.+/-]")


def _safe_filename(name: str) -> str:
    # A browser sends the name the user's file had; it ends up in a header parameter.
    return re.sub(r"[\x00-\x1f\x7f/\\]", "_", name)[:200] or "attachment"
