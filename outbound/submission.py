"""The rules for a message a client hands over whole (SMTP submission, sendmail).

Both callers use these checks and end in ``intake.queue``, the one way into the outbox. A refusal is
a ``Refused`` carrying the SMTP reply; sendmail turns it into an exit status.
"""

from __future__ import annotations

import functools
import io
from datetime import timedelta
from email.message import EmailMessage
from email.parser import Parser
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from directory.models import Account
from mailkit.addresses import domain_of, normalize_address
from outbox import rows
from outbox.models import Message
from outbox.queue import Pending, count_queued, new_message, store, wake_up

from .headers import HEADER_END, split_header, with_headers, without_headers
from .intake import sendable_addresses


class Refused(Exception):
    """The message (or one command) is refused with this SMTP reply, e.g. ``550 5.7.1 ...``."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply

    @property
    def code(self) -> int:
        return int(self.reply[:3])


def allowed_senders(account: Account) -> set[str]:
    """Lower-cased addresses the account may use: its primary address and verified aliases."""
    return {address.lower() for address, _name in sendable_addresses(account)}


def check_sender(account: Account, address: str, allowed: set[str] | None = None) -> str:
    """Return the normalized address if the account may send as it, else refuse."""
    try:
        address = normalize_address(address)
    except ValidationError:
        raise Refused("501 5.1.7 Bad sender address syntax") from None
    if allowed is None:
        allowed = allowed_senders(account)
    if address.lower() not in allowed:
        raise Refused(
            f"550 5.7.1 You may not send as {address}: use your primary address or a verified "
            "send-as alias"
        )
    return address


def check_domain_verified(account: Account) -> None:
    """Refuse all mail of a domain whose ownership is not proven yet."""
    if account.domain is not None and not account.domain.is_verified:
        raise Refused(
            f"550 5.7.1 {account.domain.name} has not proved it owns its domain name yet, so it "
            "cannot send; its administrator must publish the verification DNS record first"
        )


def check_recipient(address: str) -> str:
    try:
        return normalize_address(address)
    except ValidationError:
        raise Refused("501 5.1.3 Bad recipient address syntax") from None


def check_recipient_count(count: int) -> None:
    """Refuse the ``count``-th recipient of one message if it is one too many."""
    limit = settings.SENDGATE_SUBMISSION_MAX_RECIPIENTS
    if count > limit:
        raise Refused(f"452 4.5.3 Too many recipients: at most {limit} per message")


def sent_today(account: Account) -> int:
    """Messages the account queued in the last 24 hours; Sendgate's own reports to it do not
    use up its quota."""
    since = rows.param(Message, "created_at", timezone.now() - timedelta(days=1))
    [(count,)] = rows.fetch_all(_sent_sql(), [account.pk, Message.Kind.MAIL, since])
    return count


@functools.cache
def _sent_sql() -> str:
    account, kind = rows.column(Message, "account"), rows.column(Message, "kind")
    created_at = rows.column(Message, "created_at")
    return (
        f"SELECT COUNT(*) FROM {rows.table(Message)}"  # noqa: S608 - names from the model
        f" WHERE {account} = %s AND {kind} = %s AND {created_at} >= %s"
    )


def over_daily_limit(account: Account, sent: int | None = None) -> bool:
    """``sent``: the count if the caller knows it (a submission session keeps one)."""
    if sent is None:
        sent = sent_today(account)
    return sent >= settings.SENDGATE_DAILY_MESSAGE_LIMIT


def check_daily_limit(account: Account, sent: int | None = None) -> None:
    # Temporary: the same message is accepted once the oldest of the day's messages ages out.
    if over_daily_limit(account, sent):
        limit = settings.SENDGATE_DAILY_MESSAGE_LIMIT
        noun = "message" if limit == 1 else "messages"
        raise Refused(f"451 4.7.1 You reached your limit of {limit} {noun} in 24 hours; try later")


def _parse_header(head: bytes) -> EmailMessage:
    return Parser(policy=default_policy).parsestr(head.decode("utf-8", "replace"), headersonly=True)


def _header_text(headers: EmailMessage, name: str) -> str:
    """The first ``name`` header as the email package decodes it, unfolded and without control
    characters; "" if there is none. A plain value (ASCII, no encoded word) is that already,
    so it is read as it is: the header registry builds a class for every header it reads."""
    value = next((value for key, value in headers.raw_items() if key.lower() == name), None)
    if value is None:
        return ""
    if not value.isascii() or "=?" in value:
        value = str(headers[name])
    return " ".join(value.split())


def _from_address(headers: EmailMessage) -> str:
    """The one address in the message's From header, or refuse."""
    fields = [value for name, value in headers.raw_items() if name.lower() == "from"]
    addresses = _addresses(fields[0]) if len(fields) == 1 else ()
    if len(addresses) != 1 or not addresses[0]:
        raise Refused("550 5.7.1 The message needs a From header with exactly one address")
    return addresses[0]


@functools.lru_cache(maxsize=4096)
def _addresses(from_value: str) -> tuple[str, ...]:
    """The addresses of a From header as the email package reads them. A sender's messages
    repeat the same From line, and reading one costs more than the rest of the checks."""
    header = default_policy.header_fetch_parse("From", from_value)
    return tuple(address.addr_spec for address in header.addresses)


# Bytes of the message read at a time, from a spooled submission into the outbox row.
CHUNK = 4 * 1024 * 1024
# A message up to this size is read whole and stored with its group's other small messages in
# one INSERT; a bigger one is stored on its own, a CHUNK at a time, so a group never holds many
# big messages in memory at once.
WHOLE = 64 * 1024
# The header is looked for within this many bytes.
MAX_HEADER = 4 * 1024 * 1024


def _split_off_header(content: BinaryIO) -> tuple[bytes, bytes]:
    """Read ``content`` up to the end of its header: (header lines, what was read past them)."""
    read = b""
    while piece := content.read(64 * 1024):
        read += piece
        if HEADER_END.search(read) or len(read) > MAX_HEADER:
            break
    return split_header(read)


def submit(
    account: Account,
    envelope_from: str,
    recipients: list[str],
    content: bytes | BinaryIO,
    received: str,
    *,
    allowed: set[str] | None = None,
    sent: int | None = None,
) -> Message:
    """Check everything, then commit the message to the outbox and wake a worker; refuse with
    ``Refused``. See ``prepare`` for the arguments."""
    pending = prepare(account, envelope_from, recipients, content, received, allowed, sent)
    with transaction.atomic():
        store([pending])
        # robust: the message is committed whatever the broker says; the sweeper has it.
        transaction.on_commit(wake_up, robust=True)
    count_queued([pending.message])
    return pending.message


def prepare(
    account: Account,
    envelope_from: str,
    recipients: list[str],
    content: bytes | BinaryIO,
    received: str,
    allowed: set[str] | None = None,
    sent: int | None = None,
) -> Pending:
    """Check everything and build the outbox row (not saved: ``outbox.queue.store`` does, in the
    caller's transaction); refuse with ``Refused``.

    ``content`` may be a file (the listener spools big messages to disk): a message of up to
    WHOLE bytes is read whole; of a bigger one only the header is held in memory, and the rest
    goes into the outbox row a chunk at a time. ``received`` is the ``Received:`` value up to
    the date, which is added here. A caller that knows the account's ``allowed`` senders and the
    messages it ``sent`` today passes them (then nothing here queries the database).
    """
    check_domain_verified(account)
    if isinstance(content, bytes):
        content = io.BytesIO(content)
    size = content.seek(0, io.SEEK_END)
    content.seek(0)
    if allowed is None:
        allowed = allowed_senders(account)  # one query for the envelope and the From header
    check_sender(account, envelope_from, allowed)
    if not recipients:
        raise Refused("554 5.5.1 No valid recipients")
    recipients = [check_recipient(r) for r in recipients]
    check_recipient_count(len(recipients))
    if size > settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES:
        raise Refused("552 5.3.4 Message too big")
    check_daily_limit(account, sent)
    head, past_head = _split_off_header(content)
    headers = _parse_header(head)  # once: parsing is most of a small message's CPU here
    try:
        from_address = check_sender(account, _from_address(headers), allowed)
    except Refused as refusal:
        if refusal.code == 501:
            raise Refused("550 5.7.1 The From header holds no valid address") from None
        raise Refused(
            "550 5.7.1 The From header must be your primary address or a verified send-as alias"
        ) from None

    now = timezone.now()
    added = [f"Received: {received}; {format_datetime(now)}"]
    if not any(name.lower() == "date" for name, _value in headers.raw_items()):
        added.append(f"Date: {format_datetime(now)}")
    message_id = _header_text(headers, "message-id")
    if not message_id:
        message_id = make_msgid(domain=domain_of(from_address))
        added.append(f"Message-ID: {message_id}")
    # Bcc recipients are in the envelope; the header would tell every recipient about them.
    head = with_headers(without_headers(head, {"bcc"}), added)
    subject = _header_text(headers, "subject")
    body = head + past_head
    rest = None
    if size <= WHOLE:
        body += content.read()  # it can be stored with other messages in one statement
    else:
        rest = iter(lambda: content.read(CHUNK), b"")
    message = new_message(account, from_address, recipients, subject, message_id[:255], body)
    return Pending(message, rest)
