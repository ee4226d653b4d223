"""Queue a message: commit it to the outbox, then wake a delivery worker."""

from __future__ import annotations

from celery import current_app
from django.db import transaction
from prometheus_client import Counter

from directory.models import Account

from .models import Message

# Delivery sits above the outbox (it reads send-as servers, and send-as queues its codes here), so
# the outbox wakes it by task name instead of importing it.
WAKE_UP_TASK = "outbound.tasks.deliver_message"

MESSAGES_QUEUED = Counter(
    "sendgate_messages_queued",
    "Messages committed to the outbox, by kind (mail, report).",
    ["kind"],
)


def queue(
    account: Account,
    from_address: str,
    recipients: list[str],
    subject: str,
    message_id: str,
    raw: bytes,
    kind: str = Message.Kind.MAIL,
) -> Message:
    """Commit the message, then wake a worker; the sweeper finds it if that wake-up is lost."""
    with transaction.atomic():
        message = Message.objects.create(
            account=account,
            domain_id=account.domain_id,
            kind=kind,
            from_address=from_address,
            recipients=recipients,
            pending_recipients=list(recipients),
            subject=subject[:998],
            message_id=message_id,
            raw=raw,
        )
        transaction.on_commit(lambda: current_app.send_task(WAKE_UP_TASK, args=[message.pk]))
    MESSAGES_QUEUED.labels(kind).inc()
    return message
