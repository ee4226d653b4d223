"""A worker keeps its sessions to a gateway open between tasks (mailkit.smtp_pool), and pipelines
a message's commands to a server that offers it; every message still gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from gateways.models import SmtpServer
from mailkit.smtp import Security, Target, send_many
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import Message

from .conftest import stop_worker, wait_for
from .fault_peer import FaultPeer

BOB, CARL, DORA = "bob@elsewhere.test", "carl@elsewhere.test", "dora@elsewhere.test"


@pytest.fixture
def gateway(people, trust_test_ca, fault_peer, pki):
    """example.com's gateway: STARTTLS and AUTH, as scripted; it counts connections and logins."""

    def make(**script) -> tuple[FaultPeer, SmtpServer]:
        peer = fault_peer(starttls=pki.server_context, auth_reply="235 2.7.0 ok", **script)
        server = SmtpServer.objects.create(
            host="localhost", port=peer.port, username="relay", password="pw", last_test_ok=True
        )
        people.domain.outbound_gateway = server
        people.domain.save()
        return peer, server

    return make


def send(people, recipients=(BOB,)) -> Message:
    """Accept a message and run one delivery task for it, as a worker would."""
    message = accept_message(people.user, people.user.email, list(recipients), "Hi", "Body")
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver_batch([message.pk])
    message.refresh_from_db()
    return message


def logins(peer: FaultPeer) -> int:
    return sum(command.startswith("AUTH") for command in peer.commands)


def test_consecutive_tasks_to_the_same_server_share_one_session(people, gateway):
    peer, _server = gateway()
    first, second = send(people), send(people)
    assert [first.state, second.state] == ["sent", "sent"]
    assert peer.connections == 1 and logins(peer) == 1
    assert len(peer.delivered) == 2


def test_a_session_the_server_closed_while_idle_is_reopened_without_an_extra_attempt(
    people, gateway
):
    peer, _server = gateway(idle_timeout=0.2)
    assert send(people).state == "sent"
    wait_for(lambda: peer.hang_ups == 1, what="the server to close the idle session")

    message = send(people)
    assert message.state == "sent" and message.attempt_count == 1
    assert message.attempts.count() == 1
    assert peer.connections == 2 and len(peer.delivered) == 2


def test_a_session_that_hangs_up_at_mail_from_is_retried_once_on_a_fresh_one(people, gateway):
    """The server's idle timeout strikes just as the kept session is used again: its 421 to
    MAIL FROM is not the message's outcome; the same attempt goes on over a new session."""
    peer, _server = gateway(hang_up_at_mail_after=1)
    assert send(people).state == "sent"

    message = send(people)
    assert message.state == "sent" and message.attempt_count == 1
    assert message.attempts.get().outcome == "sent"
    assert peer.connections == 2 and len(peer.delivered) == 2


def test_a_fresh_session_refusing_mail_from_with_421_is_not_retried(people, gateway):
    peer, _server = gateway(hang_up_at_mail_after=0)
    message = send(people)
    assert message.state == "deferred" and "421" in message.last_reply
    assert peer.connections == 1 and peer.delivered == []


def test_changed_credentials_open_a_new_session(people, gateway):
    peer, server = gateway()
    assert send(people).state == "sent"
    server.password = "new-pw"
    server.save()
    assert send(people).state == "sent"
    assert peer.connections == 2 and logins(peer) == 2
    assert send(people).state == "sent"
    assert peer.connections == 2  # the new session is kept in turn


def test_a_kept_session_is_closed_with_quit_after_the_idle_timeout(people, gateway, settings):
    settings.SENDGATE_SMTP_IDLE_SECONDS = 0.2
    peer, _server = gateway()
    assert send(people).state == "sent"
    wait_for(lambda: "QUIT" in peer.commands, what="the idle session to be closed")
    assert send(people).state == "sent"
    assert peer.connections == 2


def test_without_kept_sessions_each_task_opens_its_own(people, gateway, settings):
    settings.SENDGATE_SMTP_IDLE_MAX = 0
    peer, _server = gateway()
    send(people), send(people)
    # Each session is closed (QUIT) on the worker's loop once its task is done, not before the
    # task returns: wait for the second one rather than race it.
    wait_for(lambda: peer.commands.count("QUIT") == 2, what="both sessions to be closed")
    assert peer.connections == 2


def test_the_connection_test_never_uses_a_kept_session(people, gateway):
    from gateways.connection_test import run_probe

    peer, server = gateway()
    assert send(people).state == "sent"
    assert run_probe(server, people.user.email).ok
    assert peer.connections == 2 and logins(peer) == 2


def test_a_pipelined_message_records_its_refused_recipient(people, gateway):
    peer, _server = gateway(pipelining=True, rcpt_replies={CARL: "550 5.1.1 no such user"})
    message = send(people, [BOB, CARL, DORA])
    assert message.state == "sent"
    assert list(message.failed_recipients) == [CARL]
    assert "550 5.1.1 no such user" in message.failed_recipients[CARL]
    assert [d.rcpt_tos for d in peer.delivered] == [[BOB, DORA]]
    assert "550 5.1.1 no such user" in message.attempts.get().reply


def test_a_pipelined_transaction_writes_every_command_and_reply_in_the_transcript(
    fault_peer, pki, trust_test_ca
):
    peer = fault_peer(
        starttls=pki.server_context,
        auth_reply="235 2.7.0 ok",
        pipelining=True,
        rcpt_replies={CARL: "550 5.1.1 no such user"},
    )
    target = Target("localhost", peer.port, Security.STARTTLS, "relay", "s3cret")
    [outcome] = asyncio.run(send_many(target, [("ann@example.com", [BOB, CARL], b"Hi\r\n")]))
    assert outcome is not None and outcome.ok
    assert outcome.refused == {CARL: "550 5.1.1 no such user"}
    mail = outcome.transcript.index("C: MAIL FROM:<ann@example.com>")
    assert outcome.transcript[mail:] == [
        "C: MAIL FROM:<ann@example.com>",
        f"C: RCPT TO:<{BOB}>",
        f"C: RCPT TO:<{CARL}>",
        "C: DATA",
        "S: 250 2.1.0 ok",
        "S: 250 2.1.5 ok",
        "S: 550 5.1.1 no such user",
        "S: 354 go on",
        "S: 250 2.0.0 queued",
    ]
    assert not any("s3cret" in line for line in outcome.transcript)


def test_a_pipelined_message_every_recipient_refused_is_reset_and_the_session_goes_on(
    people, gateway
):
    peer, _server = gateway(
        pipelining=True,
        rcpt_replies={CARL: "550 5.1.1 no such user", DORA: "550 5.1.1 no such user"},
    )
    refused = send(people, [CARL, DORA])
    assert refused.state == "failed" and set(refused.failed_recipients) == {CARL, DORA}
    assert "RSET" in peer.commands
    assert send(people).state == "sent"
    assert peer.connections == 1


def test_a_refused_first_message_does_not_take_the_rest_of_the_batch_with_it(people, gateway):
    peer, _server = gateway(rcpt_replies={CARL: "550 5.1.1 no such user"})
    ids = [
        accept_message(people.user, people.user.email, [rcpt], "Hi", "B").pk for rcpt in (CARL, BOB)
    ]
    delivery.deliver_batch(ids)
    states = dict(Message.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert [states[pk] for pk in ids] == ["failed", "sent"]
    assert peer.connections == 1 and [d.rcpt_tos for d in peer.delivered] == [[BOB]]


@pytest.mark.worker
def test_a_worker_keeps_its_session_between_tasks_and_says_quit_when_it_stops(
    people, gateway, worker_factory
):
    peer, _server = gateway()
    # Kept long enough that a slow machine between the two tasks cannot close it first.
    worker = worker_factory(SENDGATE_SMTP_IDLE_SECONDS="120")
    for n in range(2):
        message = accept_message(people.user, people.user.email, [BOB], f"#{n}", "B")
        wait_for(
            lambda pk=message.pk: Message.objects.filter(pk=pk, state="sent").exists(),
            what=f"message #{n} to be sent",
        )
    assert peer.connections == 1 and logins(peer) == 1
    stop_worker(worker)
    assert peer.commands[-1] == "QUIT"
