from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task
def deliver_message(message_id: int) -> None:
    """Wake-up for one newly accepted message."""
    delivery.deliver(message_id)


@shared_task
def deliver_messages(message_ids: list[int]) -> None:
    """A batch: one connection per server carries all of its messages."""
    delivery.deliver_batch(message_ids)


@shared_task
def sweep_outbox() -> None:
    """Beat: re-queue due and abandoned messages; the outbox row, not the task, is the truth."""
    ids = delivery.due_message_ids()
    size = settings.SENDGATE_BATCH_SIZE
    for start in range(0, len(ids), size):
        deliver_messages.delay(ids[start : start + size])
