from __future__ import annotations

import time

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings

from mailkit.smtp_pool import worker_loop

from . import delivery


@shared_task
def deliver_message(message_id: int) -> None:
    """The wake-up of earlier versions, one per message (such tasks may still be queued during an
    upgrade). It takes whatever else is due along (up to a batch); the wake-ups of messages
    already taken find nothing left to claim and return at once."""
    others = delivery.due_message_ids(limit=settings.SENDGATE_BATCH_SIZE - 1, interrupted=False)
    delivery.deliver_batch([message_id, *(pk for pk in others if pk != message_id)])


@shared_task
def deliver_due() -> None:
    """A coalesced wake-up (no arguments: many accepted messages, one task): deliver what is
    due, a batch at a time, until nothing is left or SENDGATE_BATCH_SECONDS are spent; then hand
    what is still due to a fresh task rather than hold this worker. Tasks running at once split
    the work (delivery.claim_due)."""
    ends = time.monotonic() + settings.SENDGATE_BATCH_SECONDS
    while time.monotonic() < ends:
        taken = delivery.claim_due(settings.SENDGATE_BATCH_SIZE)
        if not taken.ids:
            return
        delivery.deliver_claimed(taken, budget_ends=ends)
        if len(taken.ids) < settings.SENDGATE_BATCH_SIZE:
            # Everything due was taken. Mail committed since brings a wake-up of its own; looping
            # here instead would keep every worker process polling for a few messages each, and
            # a batch's fixed cost (queries, a task) paid per handful of messages.
            return
    if delivery.due_message_ids(limit=1, interrupted=False):
        deliver_due.delay()


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


@worker_process_shutdown.connect  # a prefork child
@worker_shutdown.connect  # the solo pool's one process
def close_smtp_sessions(**_kwargs: object) -> None:
    """Say QUIT to the servers this process kept sessions open with (mailkit.smtp_pool)."""
    worker_loop.close()
