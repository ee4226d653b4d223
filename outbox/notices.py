"""Sendgate's own mail to an account (notices, delivery reports), queued like any mail."""

from __future__ import annotations

from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from directory.models import Account
from mailkit.addresses import normalize_address, reject_control_characters

from .models import Message
from .queue import queue


def mailer_daemon(account: Account) -> str:
    """The address Sendgate's own mail comes from: SENDGATE_SYSTEM_FROM, else MAILER-DAEMON at
    the account's domain (a domain the organisation's path may send as)."""
    configured = system_from_setting()
    if configured is not None:
        return configured[1]
    domain = account.domain.name if account.domain else settings.SENDGATE_SMTP_HELO_NAME
    return f"MAILER-DAEMON@{domain}"


def system_from_setting() -> tuple[str, str] | None:
    """SENDGATE_SYSTEM_FROM as (display name, address), None when unset; ValueError if unusable."""
    if not settings.SENDGATE_SYSTEM_FROM:
        return None
    name, address = parseaddr(settings.SENDGATE_SYSTEM_FROM)
    try:
        return reject_control_characters(name), normalize_address(address)
    except ValidationError as error:
        raise ValueError(error.messages[0]) from error


def build_notice(
    account: Account, subject: str, body: str, to: list[str] | None = None
) -> EmailMessage:
    """Sendgate's own mail to ``to`` (default: the account itself), sent on its behalf."""
    configured = system_from_setting()
    notice = EmailMessage(policy=SMTP)
    notice["From"] = formataddr(
        (configured[0] if configured and configured[0] else _("Sendgate"), mailer_daemon(account))
    )
    notice["To"] = ", ".join(to or [account.email])
    notice["Subject"] = subject
    notice["Date"] = format_datetime(timezone.now())
    notice["Message-ID"] = make_msgid(domain=mailer_daemon(account).split("@")[1])
    notice["Auto-Submitted"] = "auto-generated"
    notice.set_content(body)
    return notice


def send_to_sender(
    account: Account, email: EmailMessage | MIMEMultipart, to: list[str] | None = None
) -> Message:
    """Queue Sendgate's own message (to the account unless ``to`` says otherwise). It leaves
    through the account's domain path with the null envelope sender, and as a REPORT it is not
    the account's sent mail."""
    return queue(
        account,
        mailer_daemon(account),
        to or [account.email],
        str(email["Subject"]),
        str(email["Message-ID"]),
        email.as_bytes(policy=SMTP),
        kind=Message.Kind.REPORT,
    )


def notify_gateway_paused(
    account: Account, address: str, reason: str, *, signed_in: bool = False
) -> Message:
    """Tell the owner once that mail sent as ``address`` waits for them to act."""
    if signed_in:
        body = _(
            "The SMTP server you connected for %(address)s no longer accepts Sendgate's sign-in:\n"
            "%(reason)s\n\nMail sent as %(address)s waits until you sign in again on the Send "
            "mail as page; it is not sent any other way meanwhile."
        )
    else:
        body = _(
            "The SMTP server you set up for %(address)s refused the username or password:\n"
            "%(reason)s\n\nMail sent as %(address)s waits until you update the password on "
            "the Send mail as page; it is not sent any other way meanwhile."
        )
    body %= {"address": address, "reason": reason}
    subject = _("Action needed: your SMTP server for %(address)s") % {"address": address}
    return send_to_sender(account, build_notice(account, subject, body))
