"""A sendmail-compatible entry for scripts on the host: read a message on stdin and queue it.

    python manage.py sendmail -t -i -f ann@example.com < message.eml
    python manage.py sendmail --account ann@example.com bob@example.org < message.eml

Same rules and same path as the submission port (``outbound.submission.submit``). Exit statuses
follow sysexits.h, as scripts written for sendmail expect.
"""

from __future__ import annotations

import os
import re
import sys
from email.parser import Parser
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import BinaryIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from directory.models import Account
from gateways.models import SendAsAlias
from outbound.headers import split_header
from outbound.submission import Refused, submit

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 64, 65, 67, 75, 77
ACCOUNT_ENV = "SENDGATE_ACCOUNT"


class Command(BaseCommand):
    help = "Queue a message read from stdin, like sendmail (-t, -f, -i, recipients as arguments)."
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("recipients", nargs="*", help="Envelope recipients.")
        parser.add_argument(
            "-t",
            dest="from_headers",
            action="store_true",
            help="Also send to the To, Cc and Bcc addresses of the message.",
        )
        parser.add_argument("-f", "-r", dest="sender", help="Envelope sender address.")
        parser.add_argument(
            "-i",
            dest="ignore_dots",
            action="store_true",
            help="A line with a single dot does not end the message.",
        )
        # sendmail's -oX options; -oi is -i, the others do not apply here.
        parser.add_argument("-o", dest="options", action="append", default=[], help="-oi = -i")
        parser.add_argument("-F", dest="full_name", help="Ignored (the From header says who).")
        parser.add_argument(
            "--account",
            default=os.environ.get(ACCOUNT_ENV, ""),
            help=f"Primary address of the sending account (or set {ACCOUNT_ENV}); "
            "default: the account whose primary address is the -f address.",
        )

    def handle(self, *args, recipients: list[str], **options) -> None:
        stdin: BinaryIO = options.get("stdin") or sys.stdin.buffer
        ignore_dots = options["ignore_dots"] or "i" in options["options"]
        raw = _read_message(stdin, ignore_dots)
        recipients = list(recipients)
        if options["from_headers"]:
            recipients += _header_recipients(raw)
        if not recipients:
            raise CommandError(_("No recipients: name them or use -t."), returncode=EX_USAGE)
        account = _resolve_account(options["account"], options["sender"])
        envelope_from = options["sender"] or account.email
        received = f"by {settings.SENDGATE_SUBMISSION_HOSTNAME} (Sendgate sendmail)"
        try:
            message = submit(account, envelope_from, recipients, raw, received)
        except Refused as refusal:
            raise CommandError(refusal.reply, returncode=_exit_status(refusal)) from None
        if options["verbosity"] > 1:
            self.stdout.write(_("Queued as %(id)s") % {"id": message.pk})


def _read_message(stdin: BinaryIO, ignore_dots: bool) -> bytes:
    lines = []
    for line in stdin:
        if not ignore_dots and line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    # Scripts write bare LF; SMTP and the outbox want CRLF.
    return re.sub(rb"\r?\n", b"\r\n", b"".join(lines))


def _header_recipients(raw: bytes) -> list[str]:
    head, _rest = split_header(raw)
    headers = Parser(policy=default_policy).parsestr(
        head.decode("utf-8", "replace"), headersonly=True
    )
    values = [str(v) for name in ("to", "cc", "bcc") for v in headers.get_all(name) or []]
    return [address for _name, address in getaddresses(values) if address]


def _resolve_account(account_address: str, sender: str | None) -> Account:
    """The account named by --account, else the one the -f address belongs to."""
    wanted = account_address or sender or ""
    account = Account.objects.filter(email__iexact=wanted.strip(), is_active=True).first()
    if account is None and sender and not account_address:
        # A verified alias identifies its account when exactly one account has it.
        owners = list(
            SendAsAlias.objects.filter(
                address__iexact=sender, state=SendAsAlias.State.VERIFIED
            ).values_list("account", flat=True)[:2]
        )
        if len(owners) == 1:
            account = Account.objects.filter(pk=owners[0], is_active=True).first()
    if account is None:
        raise CommandError(
            _("No active account found: name it with --account or %(env)s.") % {"env": ACCOUNT_ENV},
            returncode=EX_NOUSER,
        )
    return account


def _exit_status(refusal: Refused) -> int:
    if refusal.code < 500:
        return EX_TEMPFAIL  # try again later
    if refusal.reply[4:9] == "5.7.1":
        return EX_NOPERM
    return EX_DATAERR
