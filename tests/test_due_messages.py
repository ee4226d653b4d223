"""What the sweeper and a wake-up find to send: due retries and dead workers' claims, in order."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from outbound import delivery
from outbox.models import Message


def message(account, state: str, due_in_minutes: float, lease_in_minutes: float | None = None):
    now = timezone.now()
    return Message.objects.create(
        account=account,
        from_address=account.email,
        recipients=["b@x.test"],
        message_id=f"<{state}{due_in_minutes}@x>",
        raw=b"Subject: x\r\n\r\nx",
        state=state,
        next_attempt_at=now + timedelta(minutes=due_in_minutes),
        lease_until=None if lease_in_minutes is None else now + timedelta(minutes=lease_in_minutes),
    )


def test_due_and_abandoned_messages_come_longest_due_first_and_nothing_else(people):
    ann = people.user
    retry = message(ann, "deferred", -30)
    abandoned = message(ann, "sending", -20, lease_in_minutes=-1)  # its worker died
    new = message(ann, "queued", -1)
    message(ann, "deferred", +10)  # not due yet
    message(ann, "sending", -5, lease_in_minutes=+4)  # a live worker has it
    message(ann, "held", -60)  # waits for an admin
    message(ann, "sent", -90)
    message(ann, "failed", -90)

    assert delivery.due_message_ids() == [retry.pk, abandoned.pk, new.pk]
    assert delivery.due_message_ids(limit=2) == [retry.pk, abandoned.pk]
    # A wake-up leaves dead workers' claims to the sweeper (which sends them one by one).
    assert delivery.due_message_ids(interrupted=False) == [retry.pk, new.pk]
    assert delivery.interrupted_message_ids([retry.pk, abandoned.pk, new.pk]) == [abandoned.pk]
