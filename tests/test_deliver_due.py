"""The coalesced wake-up: ``deliver_due`` (no arguments) delivers whatever is due, batch by
batch, hands the rest on when its time is up, and tasks running at once split the work."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.utils import timezone

from directory.models import Account, Domain
from outbound import delivery, tasks
from outbound.intake import accept_message
from outbox.models import DeliveryAttempt, Message

from .conftest import wait_for

BOB = "bob@elsewhere.test"


def queue(people, count: int) -> list[int]:
    ids = [
        accept_message(people.user, people.user.email, [BOB], f"#{n}", "B").pk for n in range(count)
    ]
    Message.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
    return ids


@pytest.fixture
def handed_on(monkeypatch) -> list[tuple]:
    """The deliver_due tasks queued for later (recorded, not sent)."""
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.deliver_due, "delay", lambda *args: queued.append(args))
    return queued


def test_deliver_due_sends_everything_due_a_batch_at_a_time(
    people, gateway_is, fault_peer, settings, handed_on
):
    settings.SENDGATE_BATCH_SIZE = 2
    peer = gateway_is(fault_peer())
    ids = queue(people, 5)
    tasks.deliver_due()
    assert set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"sent"}
    assert len(peer.delivered) == 5 and peer.connections == 1
    assert handed_on == []


def test_deliver_due_hands_the_rest_on_when_its_time_is_up(
    people, gateway_is, fault_peer, settings, handed_on
):
    settings.SENDGATE_BATCH_SIZE = 1
    settings.SENDGATE_BATCH_SECONDS = 0.5
    peer = gateway_is(fault_peer(data_delay=0.3))
    ids = queue(people, 6)
    tasks.deliver_due()

    sent = Message.objects.filter(pk__in=ids, state="sent")
    waiting = Message.objects.filter(pk__in=ids, state="queued")
    assert 1 <= sent.count() < 6 and sent.count() + waiting.count() == 6
    assert {m.attempt_count for m in waiting} == {0}  # handed back untouched
    assert handed_on == [()]  # one more wake-up for the rest
    assert len(peer.delivered) == sent.count()


def test_deliver_due_leaves_messages_taken_back_from_a_dead_worker_to_the_sweeper(
    people, gateway_is, fault_peer, handed_on
):
    """The sweeper sends each of those alone (it may be what killed its worker)."""
    gateway_is(fault_peer())
    [stale] = queue(people, 1)
    Message.objects.filter(pk=stale).update(
        state=Message.State.SENDING, lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    tasks.deliver_due()
    assert Message.objects.get(pk=stale).state == Message.State.SENDING


def test_claim_due_takes_each_due_message_once_with_what_delivery_reads_of_it(
    people, django_assert_num_queries
):
    """PostgreSQL returns the claimed messages with the claim: they must be what delivery's own
    load gives (the same fields, account, domain and body size), or mail would go out wrong."""
    ids = queue(people, 3)
    Message.objects.filter(pk=ids[0]).update(
        failed_recipients={"gone@elsewhere.test": "550 no such user"}, attempt_count=2
    )
    not_due = queue(people, 1)[0]
    Message.objects.filter(pk=not_due).update(
        next_attempt_at=timezone.now() + timezone.timedelta(hours=1)
    )
    before = timezone.now()

    taken = delivery.claim_due(10)

    assert sorted(taken.ids) == ids
    assert delivery.claim_due(10).ids == []  # nothing is taken twice
    for message in Message.objects.filter(pk__in=ids):
        assert message.state == Message.State.SENDING and message.lease_until > before
    assert Message.objects.get(pk=ids[0]).attempt_count == 3
    assert Message.objects.get(pk=not_due).state == Message.State.QUEUED
    loaded = delivery._claimed_messages(taken.ids)
    returned = loaded if taken.messages is None else taken.messages
    with django_assert_num_queries(0):
        for got, expected in zip(returned, loaded, strict=True):
            assert _fields(got, Message, leave_out="raw") == _fields(
                expected, Message, leave_out="raw"
            )
            assert got.raw_size == expected.raw_size > 0
            assert _fields(got.account, Account) == _fields(expected.account, Account)
            assert _fields(got.account.domain, Domain) == _fields(expected.account.domain, Domain)
            assert got.account.domain.name == people.domain.name


def _fields(instance, model, leave_out: str = "") -> dict:
    return {
        f.attname: getattr(instance, f.attname)
        for f in model._meta.concrete_fields
        if f.name != leave_out
    }


@pytest.mark.worker
def test_two_deliver_due_tasks_at_once_split_the_work_and_send_each_message_once(
    people, smtp_peer, trust_test_ca, worker_factory
):
    from .conftest import server_for

    gateway = smtp_peer("relay@example.com", "relay-secret")
    gateway.handler.on_message = lambda _received: time.sleep(0.05)  # seconds of work in all
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    ids = [  # committed without a wake-up of their own: only the two tasks below deliver
        Message.objects.create(
            account=people.user,
            from_address=people.user.email,
            recipients=[BOB],
            pending_recipients=[BOB],
            subject=f"#{n}",
            message_id=f"<due{n}@example.com>",
            raw=f"From: ann@example.com\r\nTo: {BOB}\r\nSubject: #{n}\r\n\r\nB\r\n".encode(),
        ).pk
        for n in range(40)
    ]
    workers = [worker_factory(SENDGATE_BATCH_SIZE="4") for _ in range(2)]
    tasks.deliver_due.delay()
    tasks.deliver_due.delay()
    wait_for(
        lambda: not Message.objects.filter(pk__in=ids).exclude(state="sent").exists(),
        timeout=120,
        what="every message to be sent",
    )
    received = Counter(m.message["Subject"] for m in gateway.messages)
    assert set(received.values()) == {1} and len(received) == 40
    assert DeliveryAttempt.objects.filter(message_id__in=ids).count() == 40
    shares = [w.log.read_text().count("delivery.attempt") for w in workers]
    print(f"messages sent by each worker: {shares}")


def test_outcomes_of_more_rows_than_one_statement_can_carry_are_all_saved(people):
    """Outcomes are saved a database's worth of rows per statement (SQLite takes 999
    parameters: 90 messages' outcomes); every message's own outcome reaches its row."""
    ids = queue(people, 200)
    messages = list(Message.objects.filter(pk__in=ids).order_by("pk"))
    now = timezone.now()
    for n, message in enumerate(messages):
        message.state = Message.State.SENT if n % 2 else Message.State.DEFERRED
        message.last_reply = f"250 2.0.0 reply {n}"
        message.attempt_count = n
        message.pending_recipients = [] if n % 2 else [BOB]
        message.sent_at = now if n % 2 else None
    delivery._save_settled(messages)
    saved = Message.objects.filter(pk__in=ids).order_by("pk")
    assert [(m.state, m.last_reply, m.attempt_count, m.pending_recipients) for m in saved] == [
        (m.state, m.last_reply, m.attempt_count, m.pending_recipients) for m in messages
    ]
    assert saved.filter(sent_at=now).count() == 100
