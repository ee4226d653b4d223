from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task
def deliver_due() -> None:
    """The wake-up after messages were queued: deliver whatever is due, a batch at a time, until
    nothing is left or a batch's time is spent (the sweeper, or the next wake-up, takes the rest).
    One wake-up serves every message committed before it; a wake-up that finds nothing returns."""
    deadline = time.monotonic() + settings.SENDGATE_BATCH_SECONDS
    previous: list[int] = []
    while time.monotonic() < deadline:
        ids = delivery.due_message_ids(limit=settings.SENDGATE_BATCH_SIZE, interrupted=False)
        if not ids or ids == previous:  # nothing due, or nothing this worker could take
            return
        delivery.deliver_batch(ids)
        previous = ids


@shared_task
def deliver_message(message_id: int) -> None:
    """The wake-up of earlier versions, one per message (such tasks may still be queued during an
    upgrade). It takes whatever else is due along (up to a batch); the wake-ups of messages
    already taken find nothing left to claim and return at once."""
    others = delivery.due_message_ids(limit=settings.SENDGATE_BATCH_SIZE - 1, interrupted=False)
    delivery.deliver_batch([message_id, *(pk for pk in others if pk != message_id)])


@shared_task
def deliver_messages(message_ids: list[int]) -> None:
    """A batch: one connection per server carries all of its messages."""
    delivery.deliver_batch(message_ids)


@shared_task
def sweep_outbox() -> None:
    """Beat: re-queue due and abandoned messages; the outbox row, not the task, is the truth."""
    ids = delivery.due_message_ids()
    interrupted = set(delivery.interrupted_message_ids(ids))
    # A message whose worker died may be what killed it: it goes alone, and cannot take a whole
    # batch down with it again.
    for pk in interrupted:
        deliver_messages.delay([pk])
    ids = [pk for pk in ids if pk not in interrupted]
    size = settings.SENDGATE_BATCH_SIZE
    for start in range(0, len(ids), size):
        deliver_messages.delay(ids[start : start + size])
