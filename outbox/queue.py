"""Queue a message: commit it to the outbox, then wake a delivery worker."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from prometheus_client import Counter

from directory.models import Account

from . import bodies
from .models import Message

# Delivery sits above the outbox (it reads send-as servers, and send-as queues its codes here), so
# the outbox wakes it by task name instead of importing it. The task takes no argument: it
# delivers whatever is due, in batches, so one wake-up serves every message committed before it.
WAKE_UP_TASK = "outbound.tasks.deliver_due"

log = logging.getLogger("sendgate.outbox")

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
    rest: Iterable[bytes] = (),
    kind: str = Message.Kind.MAIL,
    *,
    wake: bool = True,
) -> Message:
    """Commit the message, then wake a worker; the sweeper finds it if that wake-up is lost.

    ``rest`` continues ``raw`` (a big message read a chunk at a time): it is appended to the
    row in the same transaction, so a worker only ever sees the whole message. ``wake=False``:
    the caller wakes a worker itself once it has committed (the listener, once per group).
    """
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
        for chunk in rest:
            bodies.append(message.pk, chunk)
        if wake:
            # robust: the message is committed whatever the broker says; the sweeper has it.
            transaction.on_commit(wake_up, robust=True)
    MESSAGES_QUEUED.labels(kind).inc()
    return message


def wake_up() -> None:
    """Ask a worker to deliver whatever is due (one task, however many messages wait)."""
    current_app.send_task(WAKE_UP_TASK)


# Wakes a worker for a list of messages (a batch).
BATCH_TASK = "outbound.tasks.deliver_messages"


def make_due(messages: QuerySet[Message]) -> list[int]:
    """Make the deferred ones among ``messages`` due now and wake workers for them; return them.

    Used when the cause of a delay is fixed (a corrected password) and for "Retry now".
    """
    with transaction.atomic():
        ids = list(messages.filter(state=Message.State.DEFERRED).values_list("pk", flat=True))
        Message.objects.filter(pk__in=ids, state=Message.State.DEFERRED).update(
            next_attempt_at=timezone.now()
        )
        size = settings.SENDGATE_BATCH_SIZE
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            transaction.on_commit(partial(current_app.send_task, BATCH_TASK, args=[chunk]))
    return ids
