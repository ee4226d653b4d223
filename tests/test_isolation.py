"""No message can break delivery for the others, hold a worker past its deadline, or loop."""

from __future__ import annotations

import os
import signal

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.utils import timezone

from gateways.models import SendAsAlias, SmtpServer
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import DeliveryAttempt, Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import wait_for
from .test_faults import BOB, CARL, DORA, FakeResolver

PARTNER = "ann@partner.org"


def due_now(*ids: int) -> None:
    Message.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())


def reports_for(people) -> list[Message]:
    return list(Message.objects.filter(kind=Message.Kind.REPORT, account=people.user))


@pytest.fixture
def alias_with_retired_key(people, fault_peer, pki, trust_test_ca):
    """Ann's alias on her own server, whose password was stored under a key no longer set up."""
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    partner = fault_peer(starttls=pki.server_context, auth_reply="235 2.7.0 ok")
    server = SmtpServer.objects.create(
        host="localhost", port=partner.port, username=PARTNER, password="pw", last_test_ok=True
    )
    retired = Fernet(Fernet.generate_key()).encrypt(b"pw").decode()
    with connection.cursor() as cursor:  # how a value written under the retired key is stored
        cursor.execute(
            "UPDATE gateways_smtpserver SET password = %s WHERE id = %s",
            [f"retired:{retired}", server.pk],
        )
    SendAsAlias.objects.create(
        account=people.user, address=PARTNER, state=SendAsAlias.State.VERIFIED, smtp_server=server
    )
    return partner


def test_an_unreadable_password_is_recorded_on_its_message_and_the_batch_goes_on(
    people,
    gateway_is,
    fault_peer,
    alias_with_retired_key,
):
    gateway = gateway_is(fault_peer())
    good = [
        accept_message(people.user, people.user.email, [r], "Hi", "B").pk for r in (BOB, CARL, DORA)
    ]
    bad = accept_message(people.user, PARTNER, [BOB], "Hi", "B").pk
    delivery.deliver_batch([*good, bad])

    assert sorted(d.rcpt_tos[0] for d in gateway.delivered) == sorted([BOB, CARL, DORA])
    assert set(Message.objects.filter(pk__in=good).values_list("state", flat=True)) == {"sent"}
    message = Message.objects.get(pk=bad)
    assert message.state == Message.State.DEFERRED
    [attempt] = message.attempts.all()
    assert attempt.outcome == DeliveryAttempt.Outcome.DEFERRED
    assert "SecretUnreadable" in attempt.reply and "'retired'" in attempt.reply
    assert alias_with_retired_key.connections == 0  # nothing was sent another way either
    assert reports_for(people) == []


def test_a_message_failing_the_same_way_every_time_fails_with_a_report(
    people, alias_with_retired_key, settings
):
    settings.SENDGATE_SAME_ERROR_LIMIT = 3
    message = accept_message(people.user, PARTNER, [BOB], "Hi", "B")
    states = []
    for _ in range(3):
        due_now(message.pk)
        delivery.deliver(message.pk)
        states.append(Message.objects.get(pk=message.pk).state)

    assert states == ["deferred", "deferred", "failed"]
    message.refresh_from_db()
    assert "giving up" in message.failed_recipients[BOB]
    assert [a.outcome for a in message.attempts.all()] == ["deferred", "deferred", "failed"]
    [report] = reports_for(people)
    assert b"Action: failed" in bytes(report.raw)
    assert not Message.objects.filter(state=Message.State.SENDING).exists()


def stale(message: Message) -> None:
    """Leave the message as a worker that died holding it leaves it."""
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.SENDING, lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )


def test_a_message_taken_back_from_a_dead_worker_gets_an_attempt_saying_so(
    people,
    gateway_is,
    fault_peer,
):
    gateway = gateway_is(fault_peer())
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "B")
    stale(message)
    assert delivery.interrupted_message_ids([message.pk]) == [message.pk]
    delivery.deliver(message.pk)

    message.refresh_from_db()
    assert message.state == Message.State.SENT and len(gateway.delivered) == 1
    interrupted, sent = message.attempts.all()
    assert "stopped before it recorded an outcome" in interrupted.reply
    assert sent.outcome == DeliveryAttempt.Outcome.SENT


def test_a_message_its_workers_keep_dying_on_fails_instead_of_looping(
    people,
    gateway_is,
    fault_peer,
    settings,
):
    settings.SENDGATE_SAME_ERROR_LIMIT = 1
    gateway = gateway_is(fault_peer())
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "B")
    stale(message)
    delivery.deliver(message.pk)

    message.refresh_from_db()
    assert message.state == Message.State.FAILED and gateway.delivered == []
    assert "giving up" in message.failed_recipients[BOB]
    assert len(reports_for(people)) == 1


# --- one deadline per message ---------------------------------------------------------------------


def test_direct_delivery_to_many_stalled_domains_shares_one_deadline(
    people,
    trust_test_ca,
    fault_peer,
    settings,
):
    settings.SENDGATE_SMTP_DEADLINE = 1
    stalled = fault_peer(greeting=None)
    settings.SENDGATE_DIRECT_MX_PORT = stalled.port
    domains = ["a.test", "b.test", "c.test", "d.test"]
    resolver = FakeResolver({d: [(10, "localhost"), (20, "localhost")] for d in domains})
    recipients = [f"x@{d}" for d in domains]
    message = accept_message(people.user, people.user.email, recipients, "Hi", "B")
    delivery.deliver(message.pk, resolver=resolver)

    message.refresh_from_db()
    # The first host used up the message's deadline: no other host or domain was dialled.
    assert stalled.connections == 1
    assert message.state == Message.State.DEFERRED
    assert message.pending_recipients == recipients
    replies = [a.reply for a in message.attempts.all()]
    assert len(replies) == 4 and all("within 1 seconds" in r for r in replies)


def test_task_time_limits_leave_room_for_the_batch_and_its_last_message(settings):
    budget = settings.SENDGATE_BATCH_SECONDS + settings.SENDGATE_SMTP_DEADLINE
    assert budget < settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert settings.CELERY_TASK_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert settings.SENDGATE_CLAIM_LEASE_SECONDS > settings.CELERY_TASK_TIME_LIMIT


def test_a_lease_shorter_than_the_task_limit_is_refused_at_start(settings):
    settings.SENDGATE_CLAIM_LEASE_SECONDS = 60
    with pytest.raises(SystemCheckError, match="SENDGATE_CLAIM_LEASE_SECONDS"):
        call_command("check")


@pytest.mark.worker
def test_a_worker_on_a_stalled_gateway_records_every_message_and_leaves_none_sending(
    people,
    gateway_is,
    fault_peer,
    worker_factory,
):
    gateway_is(fault_peer(greeting=None))
    worker_factory(SENDGATE_SMTP_DEADLINE="1", SENDGATE_BATCH_SECONDS="1")
    ids = [accept_message(people.user, people.user.email, [BOB], "Hi", "B").pk for _ in range(3)]
    wait_for(
        lambda: (
            set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"deferred"}
        ),
        what="every message to be deferred",
    )
    assert DeliveryAttempt.objects.filter(message_id__in=ids).count() == 3


@pytest.mark.worker
def test_a_worker_killed_mid_message_loses_nothing_and_says_so(
    people,
    gateway_is,
    fault_peer,
    worker_factory,
):
    from outbound.tasks import sweep_outbox

    peer = gateway_is(fault_peer(data_delay=60))
    worker = worker_factory()
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "B")
    wait_for(lambda: any(c.startswith("DATA") for c in peer.commands), what="DATA to start")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert Message.objects.get(pk=message.pk).state == Message.State.SENDING

    peer.script.data_delay = 0
    Message.objects.filter(pk=message.pk).update(lease_until=timezone.now())  # the lease ran out
    worker_factory()
    sweep_outbox.delay()
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, state=Message.State.SENT).exists(),
        what="the message to be delivered by the next worker",
    )
    interrupted, sent = Message.objects.get(pk=message.pk).attempts.all()
    assert "stopped before it recorded an outcome" in interrupted.reply
    assert sent.outcome == DeliveryAttempt.Outcome.SENT


def test_a_round_holds_the_bodies_of_few_messages_but_keeps_the_connection(
    people, gateway_is, fault_peer, monkeypatch
):
    """Bodies are read round by round, a round within ROUND_BYTES (at least one message)."""
    peer = gateway_is(fault_peer())
    big = "x" * 3000
    ids = [accept_message(people.user, people.user.email, [BOB], f"#{n}", big).pk for n in range(3)]
    monkeypatch.setattr(delivery, "ROUND_BYTES", 4000)  # one of these bodies per round
    rounds = []
    real_jobs = delivery._jobs
    monkeypatch.setattr(
        delivery, "_jobs", lambda taken, *a: rounds.append(len(taken)) or real_jobs(taken, *a)
    )
    delivery.deliver_batch(ids)
    assert rounds == [1, 1, 1]
    assert peer.connections == 1 and len(peer.delivered) == 3
    assert set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"sent"}


def test_giving_up_on_one_message_does_not_give_up_on_another_with_the_same_error(
    people, alias_with_retired_key, settings
):
    settings.SENDGATE_SAME_ERROR_LIMIT = 3
    first = accept_message(people.user, PARTNER, [BOB], "First", "B")
    for _ in range(2):
        due_now(first.pk)
        delivery.deliver(first.pk)
    second = accept_message(people.user, PARTNER, [BOB], "Second", "B")
    due_now(first.pk)
    delivery.deliver_batch([first.pk, second.pk])  # one server error, shared by both

    states = dict(Message.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "state"))
    assert states == {first.pk: "failed", second.pk: "deferred"}
    assert "giving up" not in Message.objects.get(pk=second.pk).last_reply


def test_the_sweeper_hands_out_messages_taken_back_from_dead_workers_one_per_task(
    people, monkeypatch
):
    from outbound import tasks

    due = [accept_message(people.user, people.user.email, [BOB], "Due", "B") for _ in range(2)]
    dead = [accept_message(people.user, people.user.email, [BOB], "Dead", "B") for _ in range(2)]
    for message in dead:
        stale(message)
    handed_out = []
    monkeypatch.setattr(tasks.deliver_messages, "delay", handed_out.append)
    tasks.sweep_outbox()
    batches = sorted(tuple(sorted(batch)) for batch in handed_out)
    assert batches == sorted([(dead[0].pk,), (dead[1].pk,), tuple(sorted(m.pk for m in due))])
