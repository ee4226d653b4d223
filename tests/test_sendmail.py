"""`manage.py sendmail`: sendmail's flags, the submission rules, the same outbox path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from email import message_from_bytes
from email.policy import SMTP as SMTP_POLICY

import pytest
from django.core.management import CommandError, call_command

from gateways.models import SendAsAlias
from outbox.models import Message

from .conftest import ROOT, _database_url

MESSAGE = b"""From: Ann <ann@example.com>
To: bob@elsewhere.test
Cc: carol@elsewhere.test
Bcc: secret@hidden.test
Subject: Nightly report

All good.
.
This line is still part of the message with -i.
"""


def sendmail(*args: str, data: bytes = MESSAGE) -> None:
    call_command("sendmail", *args, stdin=io.BytesIO(data))


def test_t_takes_recipients_from_the_headers_and_strips_bcc(people):
    sendmail("-t", "-i", "-f", "ann@example.com")
    message = Message.objects.get()
    assert message.account == people.user
    assert message.recipients == [
        "bob@elsewhere.test",
        "carol@elsewhere.test",
        "secret@hidden.test",
    ]
    raw = bytes(message.raw)
    assert b"secret@hidden.test" not in raw and b"\r\nAll good.\r\n" in raw
    assert b"still part of the message" in raw
    assert "(Sendgate sendmail)" in message_from_bytes(raw, policy=SMTP_POLICY)["Received"]


def test_without_i_a_lone_dot_ends_the_message_and_arguments_are_the_recipients(people):
    sendmail("--account", "ann@example.com", "dave@elsewhere.test")
    message = Message.objects.get()
    assert message.recipients == ["dave@elsewhere.test"]
    assert b"still part of the message" not in bytes(message.raw)


def test_a_verified_alias_as_f_finds_its_account(people):
    SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    data = MESSAGE.replace(b"From: Ann <ann@example.com>", b"From: ann@partner.org")
    sendmail("-oi", "-f", "ann@partner.org", "bob@elsewhere.test", data=data)
    assert Message.objects.get().from_address == "ann@partner.org"


def test_a_foreign_from_header_is_refused_with_exit_status_77_and_nothing_is_queued(people):
    data = MESSAGE.replace(b"From: Ann <ann@example.com>", b"From: zoe@other.example")
    with pytest.raises(CommandError) as refused:
        sendmail("-t", "--account", "ann@example.com", data=data)
    assert refused.value.returncode == 77 and "550 5.7.1" in str(refused.value)
    assert not Message.objects.exists()


def test_an_unverified_alias_is_refused(people):
    SendAsAlias.objects.create(account=people.user, address="ann@pending.org")
    with pytest.raises(CommandError) as refused:
        sendmail("-t", "--account", "ann@example.com", "-f", "ann@pending.org")
    assert refused.value.returncode == 77
    assert not Message.objects.exists()


def test_an_unknown_account_exits_67(people):
    with pytest.raises(CommandError) as refused:
        sendmail("-t", "-f", "nobody@example.com")
    assert refused.value.returncode == 67


def test_the_real_command_line_reads_stdin_and_queues(transactional_db, people, settings):
    env = dict(os.environ, DATABASE_URL=_database_url(), SENDGATE_ACCOUNT="ann@example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "sendmail", "-t", "-oi"],
        input=MESSAGE.replace(b"\n", b"\r\n"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert Message.objects.get().account == people.user
