"""Sendgate's own mail to an account (notices, delivery reports), queued like any mail."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from directory.models import Account

from .models import Message
from .queue import queue


def mailer_daemon(account: Account) -> str:
    domain = account.domain.name if account.domain else settings.SENDGATE_SMTP_HELO_NAME
    return f"MAILER-DAEMON@{domain}"


def build_notice(account: Account, subject: str, body: str) -> EmailMessage:
    notice = EmailMessage(policy=SMTP)
    notice["From"] = formataddr((_("Sendgate"), mailer_daemon(account)))
    notice["To"] = account.email
    notice["Subject"] = subject
    notice["Date"] = format_datetime(timezone.now())
    notice["Message-ID"] = make_msgid(domain=mailer_daemon(account).split("@")[1])
    notice["Auto-Submitted"] = "auto-generated"
    notice.set_content(body)
    return notice


def send_to_sender(account: Account, email: EmailMessage) -> Message:
    """Queue Sendgate's own message to the account; it leaves through the domain path."""
    return queue(
        account,
        mailer_daemon(account),
        [account.email],
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
