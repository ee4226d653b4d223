"""Delivery status notifications (RFC 3464) that Sendgate mails to a sender."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.message import Message as Block
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime, formataddr, make_msgid

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from outbox.models import Message
from outbox.notices import mailer_daemon

_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def _status(reply: str, action: str) -> str:
    match = _ENHANCED_STATUS.search(reply)
    if match:
        return match.group(1)
    return "4.0.0" if action == "delayed" else "5.0.0"


def build_report(original: Message, outcomes: dict[str, str], action: str) -> MIMEMultipart:
    """A multipart/report for ``original``: ``outcomes`` maps each recipient to the last reply.

    ``action`` is "failed" (given up: RFC 3464 Action: failed) or "delayed" (still trying).
    """
    account = original.account
    now = timezone.now()
    if action == "failed":
        subject = _("Undelivered mail: %(subject)s")
        intro = _(
            "Your message could not be delivered to these recipients. It will not be retried."
        )
    else:
        subject = _("Delayed mail (still trying): %(subject)s")
        intro = _(
            "Your message has not been delivered to these recipients yet. Sendgate keeps "
            "trying; you do not need to send it again."
        )
    lines = [intro, ""] + [f"  {rcpt}: {reply}" for rcpt, reply in outcomes.items()]
    human = EmailMessage()
    human.set_content("\n".join(lines) + "\n")

    per_message = Block()
    per_message["Reporting-MTA"] = f"dns; {settings.SENDGATE_SMTP_HELO_NAME}"
    per_message["Arrival-Date"] = format_datetime(original.created_at)
    blocks: list[Block | str] = [per_message]
    for rcpt, reply in outcomes.items():
        block = Block()
        block["Final-Recipient"] = f"rfc822; {rcpt}"
        block["Action"] = action
        block["Status"] = _status(reply, action)
        block["Diagnostic-Code"] = f"smtp; {' '.join(reply.split())}"
        block["Last-Attempt-Date"] = format_datetime(now)
        blocks.append(block)
    status = MIMEBase("message", "delivery-status")
    status.set_payload(blocks)

    headers = bytes(original.raw).split(b"\r\n\r\n", 1)[0] + b"\r\n"
    original_headers = EmailMessage()
    original_headers.set_content(headers.decode("utf-8", "replace"), subtype="rfc822-headers")

    report = MIMEMultipart("report", report_type="delivery-status")
    report.attach(human)
    report.attach(status)
    report.attach(original_headers)
    report["From"] = formataddr((_("Mail Delivery System"), mailer_daemon(account)))
    report["To"] = account.email
    report["Subject"] = subject % {"subject": original.subject or _("(no subject)")}
    report["Date"] = format_datetime(now)
    report["Message-ID"] = make_msgid(domain=mailer_daemon(account).split("@")[1])
    report["Auto-Submitted"] = "auto-replied"
    return report
