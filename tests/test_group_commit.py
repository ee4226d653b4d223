"""The listener stores many sessions' messages in one transaction: each message still succeeds or
fails alone, and a 250 is only ever answered for a committed row (even across a SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connections

from outbound.credentials import create_app_password
from outbound.group_commit import (
    BUSY_MESSAGES,
    GroupCommit,
    Submission,
    WakeUps,
    in_db,
    store_group,
)
from outbound.models import AppPassword
from outbound.submission import Refused
from outbox.models import Message
from outbox.queue import Pending, new_message

from .conftest import _database_url, free_port, wait_for
from .test_submission import mail

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ann(people):
    _app, password = create_app_password(people.user, "Laptop")
    people.user.app_password = password
    return people.user


def queued_id(reply: bytes) -> int:
    return int(re.search(rb"Queued as (\d+)", reply).group(1))


def test_concurrent_sessions_each_get_250_for_their_own_stored_message(submission_server, ann):
    replies: dict[int, list[int]] = {}

    def session(number: int) -> None:
        client = submission_server.connect()
        client.login(ann.email, ann.app_password)
        replies[number] = []
        for seq in range(5):
            client.mail("ann@example.com")
            client.rcpt(f"r{number}-{seq}@elsewhere.test")
            code, reply = client.data(mail(Keywords=f"{number}-{seq}"))
            assert code == 250
            replies[number].append(queued_id(reply))
        client.quit()

    threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(replies) == [0, 1, 2, 3]
    for number, ids in replies.items():
        stored = Message.objects.filter(pk__in=ids).order_by("pk")
        assert [m.recipients for m in stored] == [
            [f"r{number}-{s}@elsewhere.test"] for s in range(5)
        ]


class CountingWakeUps(WakeUps):
    def __init__(self) -> None:
        super().__init__(interval=3600, send=self.count, busy_interval=3600)
        self.sent = 0

    def count(self) -> None:
        self.sent += 1


def test_a_message_that_fails_inside_a_group_fails_alone_and_one_wake_up_serves_the_group(ann):
    """The database thread is held busy while seven messages arrive: they are stored as one group,
    the refused and the broken one fail alone, the other five are committed and answered."""
    app_password_id = ann.app_passwords.get().pk
    release = threading.Event()

    def store(number: int):
        def prepared() -> Pending:
            if number == 0:
                release.wait(10)  # the first group holds the database thread meanwhile
            if number == 3:
                raise Refused("550 5.7.1 No")
            message = new_message(
                ann, ann.email, ["bob@elsewhere.test"], f"#{number}", f"<{number}@t>", b"x"
            )
            if number == 5:
                message.account_id = None  # its row cannot be inserted: NOT NULL
            return Pending(message)

        return Submission(app_password_id, prepared)

    async def run() -> list:
        wake_ups = CountingWakeUps()
        group_commit = GroupCommit(wake_ups)
        first = asyncio.ensure_future(group_commit.store(store(0)))
        await asyncio.sleep(0.2)  # the first group is in the database thread now
        others = [asyncio.ensure_future(group_commit.store(store(n))) for n in range(1, 8)]
        await asyncio.sleep(0.2)
        release.set()
        outcomes = await asyncio.gather(first, *others)
        await in_db(connections.close_all)
        return [outcomes, wake_ups.sent]

    outcomes, wake_ups_sent = asyncio.run(run())

    assert isinstance(outcomes[3], Refused) and outcomes[3].reply == "550 5.7.1 No"
    assert isinstance(outcomes[5], Exception) and not isinstance(outcomes[5], Refused)
    stored = [o for n, o in enumerate(outcomes) if n not in (3, 5)]
    assert all(isinstance(o, Message) for o in stored)
    assert sorted(Message.objects.values_list("subject", flat=True)) == [
        f"#{n}" for n in (0, 1, 2, 4, 6, 7)
    ]
    # Two groups committed; the second came within the wake-up interval of the first, so its
    # wake-up is the one scheduled for the end of that interval (not sent within this test).
    assert wake_ups_sent == 1


def test_a_group_is_stored_whole_each_reply_naming_its_own_row_and_nothing_cut_short(ann):
    """A group of valid logins is checked and stored by one statement: each message gets its
    own row's id, stored as it came. A Message-ID too long for its column is never stored cut
    short: PostgreSQL refuses that message alone (SQLite does not check a column's length)."""
    app_password_id = ann.app_passwords.get().pk

    def recipients(number: int) -> list[str]:
        return [f"r{number}@elsewhere.test", f"s{number}@elsewhere.test"]

    def submission(number: int, message_id: str) -> Submission:
        return Submission(
            app_password_id,
            lambda: Pending(
                new_message(
                    ann, ann.email, recipients(number), f"#{number}", message_id, b"x" * number
                )
            ),
        )

    first, second, third = store_group([submission(n, f"<{n}@t>") for n in (1, 2, 3)])
    too_long = f"<{'x' * 300}@t>"
    long_id, fifth = store_group([submission(4, too_long), submission(5, "<5@t>")])

    for number, outcome in [(1, first), (2, second), (3, third), (5, fifth)]:
        row = Message.objects.get(pk=outcome.pk)
        assert (row.subject, row.message_id, bytes(row.raw)) == (
            f"#{number}",
            f"<{number}@t>",
            b"x" * number,
        )
        assert row.recipients == row.pending_recipients == recipients(number)
        assert row.state == Message.State.QUEUED and row.sent_at is None
    if isinstance(long_id, Message):  # SQLite
        assert Message.objects.get(pk=long_id.pk).message_id == too_long
    else:
        assert isinstance(long_id, Exception)
        assert not Message.objects.filter(subject="#4").exists()


def test_wake_ups_come_at_once_after_a_quiet_spell_and_further_apart_while_busy():
    """Messages one by one wake a worker at once or after the short interval; after a wake-up
    for a busy spell's many messages the next one waits the longer interval (bigger batches).
    The intervals are far apart, so a slow machine cannot blur them."""

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        sent: list[float] = []
        wake_ups = WakeUps(interval=0.05, send=lambda: sent.append(loop.time()), busy_interval=2.0)
        wake_ups.wake(1)  # quiet: at once
        await asyncio.sleep(0.01)
        wake_ups.wake(BUSY_MESSAGES - 1)  # scheduled for the end of the short interval...
        wake_ups.wake(1)  # ...and this commit goes with it
        await asyncio.sleep(0.2)
        wake_ups.wake(1)  # that wake-up was a busy one: this waits the long interval
        await asyncio.sleep(0.5)
        early = len(sent)
        await asyncio.sleep(2.0)
        wake_ups.wake(1)  # the last wake-up carried one message: the short interval again
        await asyncio.sleep(0.01)
        wake_ups.wake(1)
        await asyncio.sleep(0.3)
        return [early, *sent]

    early, *sent = asyncio.run(run())
    assert len(sent) == 5
    assert sent[1] - sent[0] < 0.5  # the short interval
    assert early == 2 and sent[2] - sent[1] >= 1.95  # the long one
    assert sent[4] - sent[3] < 0.5  # short again


def test_a_message_of_a_revoked_login_in_a_group_is_refused_and_the_others_are_stored(ann, people):
    other, _password = create_app_password(people.user, "Phone")
    revoked = ann.app_passwords.get(name="Laptop").pk

    def submission(app_password_id: int, subject: str) -> Submission:
        return Submission(
            app_password_id,
            lambda: Pending(
                new_message(ann, ann.email, ["bob@elsewhere.test"], subject, f"<{subject}@t>", b"x")
            ),
        )

    AppPassword.objects.filter(pk=revoked).delete()

    async def run() -> list:
        group_commit = GroupCommit(CountingWakeUps())
        outcomes = await asyncio.gather(
            group_commit.store(submission(revoked, "revoked")),
            group_commit.store(submission(other.pk, "valid")),
        )
        await in_db(connections.close_all)
        return list(outcomes)

    revoked_outcome, valid_outcome = asyncio.run(run())

    assert revoked_outcome is None and isinstance(valid_outcome, Message)
    assert list(Message.objects.values_list("subject", flat=True)) == ["valid"]


@pytest.fixture
def listener_process(start_listener_process):
    return start_listener_process(1)


@pytest.fixture
def start_listener_process(pki, tmp_path):
    """``manage.py submission`` as a process of its own (it can be SIGKILLed), plain on loopback."""
    started = []

    def start(processes: int) -> tuple[subprocess.Popen, int]:
        started.append(_start_listener_process(pki, tmp_path, processes))
        return started[-1]

    yield start
    for process, _port in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def _start_listener_process(pki, tmp_path, processes: int) -> tuple[subprocess.Popen, int]:
    certificate = tmp_path / "localhost.pem"
    pki.ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(certificate)
    )
    port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=_database_url(),
        SENDGATE_SUBMISSION_CERT_FILE=str(certificate),
        SENDGATE_SUBMISSION_PLAINTEXT_AUTH_ON_LOOPBACK="1",
        SENDGATE_SUBMISSION_TLS_PORT="0",
    )
    log = tmp_path / "listener.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "submission", "--processes", str(processes)]
            + ["--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def greets() -> bool:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
            return True
        except OSError:
            assert process.poll() is None, log.read_text()
            return False

    wait_for(greets, what="the listener to greet")
    return process, port


def test_a_sigkilled_listener_loses_no_message_it_answered_250(listener_process, ann):
    process, port = listener_process
    answered: list[int] = []
    lock = threading.Lock()

    def session(number: int) -> None:
        try:
            client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            client.login(ann.email, ann.app_password)
            for seq in range(1000):
                client.mail("ann@example.com")
                client.rcpt(f"r{number}-{seq}@elsewhere.test")
                code, reply = client.data(mail(Keywords=f"{number}-{seq}"))
                assert code == 250, reply
                with lock:
                    answered.append(queued_id(reply))
        except (smtplib.SMTPException, OSError):
            return  # the listener died under this session: what got no answer is the client's

    threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= 40, what="messages to be accepted")
    process.send_signal(signal.SIGKILL)  # mid-group: no chance to finish anything
    for thread in threads:
        thread.join(timeout=30)
    time.sleep(0.5)  # PostgreSQL notices the dead connection and ends its transaction

    assert len(set(answered)) == len(answered)
    assert Message.objects.filter(pk__in=answered).count() == len(answered)


def test_the_listener_runs_several_processes_on_one_port_and_stops_them_all(
    start_listener_process, ann
):
    parent, port = start_listener_process(2)
    children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    [child] = wait_for(lambda: children_file.read_text().split(), what="the second process")
    for _ in range(4):  # the kernel spreads connections over both processes
        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        client.login(ann.email, ann.app_password)
        assert client.sendmail("ann@example.com", ["bob@elsewhere.test"], mail()) == {}
        client.quit()
    assert Message.objects.count() == 4

    parent.terminate()

    assert parent.wait(timeout=30) == 0
    assert not Path(f"/proc/{child}").exists()  # ended, and reaped by the parent
