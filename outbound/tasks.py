from __future__ import annotations

from celery import shared_task

from . import delivery


@shared_task
def deliver_message(message_id: int) -> None:
    delivery.deliver(message_id)


@shared_task
def sweep_outbox() -> None:
    """Beat: re-queue due and abandoned messages; the outbox row, not the task, is the truth."""
    for message_id in delivery.due_message_ids():
        deliver_message.delay(message_id)
