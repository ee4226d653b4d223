"""Queue a message: commit it to the outbox, then wake a delivery worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from prometheus_client import Counter

from directory.models import Account

from . import bodies, rows
from .models import Message

# Delivery sits above the outbox (it reads send-as servers, and send-as queues its codes here), so
# the outbox wakes it by task name instead of importing it. The task takes no argument: it
# delivers whatever is due, in batches, so one wake-up serves every message committed before it.
WAKE_UP_TASK = "outbound.tasks.deliver_due"

log = logging.getLogger("sendgate.outbox")

T = TypeVar("T")

MESSAGES_QUEUED = Counter(
    "sendgate_messages_queued",
    "Messages committed to the outbox, by kind (mail, report).",
    ["kind"],
)


def new_message(
    account: Account,
    from_address: str,
    recipients: list[str],
    subject: str,
    message_id: str,
    raw: bytes,
    kind: str = Message.Kind.MAIL,
) -> Message:
    """The outbox row of an accepted message, not saved yet (``store`` saves it)."""
    return Message(
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


@dataclass(frozen=True)
class Pending:
    """A new message and the rest of its bytes (a big message's, read a chunk at a time), or
    None: ``message.raw`` is all of it."""

    message: Message
    rest: Iterable[bytes] | None = None


def store(pending: list[Pending]) -> None:
    """Insert the messages (one statement for all), then append each one's ``rest``; in the
    caller's transaction. Waking a worker is the caller's (``queue`` or the listener's)."""
    _insert([p.message for p in pending])
    for p in pending:
        for chunk in p.rest or ():
            bodies.append(p.message.pk, chunk)


def count_queued(messages: Iterable[Message]) -> None:
    """The metric of queued messages; called once they are committed."""
    for message in messages:
        MESSAGES_QUEUED.labels(message.kind).inc()


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
    the caller wakes a worker itself once it has committed.
    """
    message = new_message(account, from_address, recipients, subject, message_id, raw, kind)
    with transaction.atomic():
        store([Pending(message, rest or None)])
        if wake:
            # robust: the message is committed whatever the broker says; the sweeper has it.
            transaction.on_commit(wake_up, robust=True)
    count_queued([message])
    return message


def in_one_statement(pending: list[Pending], more_params: int) -> bool:
    """Whether ``store_if`` can insert ``pending`` with one statement, whose condition takes
    ``more_params`` parameters."""
    insert = rows.inserting(Message)
    max_rows = (insert.max_params - more_params) // len(insert.fields)
    return len(statements(pending, lambda p: p.message, max_rows)) == 1


def store_if(pending: list[Pending], condition: str, params: list) -> bool:
    """Insert whole messages (none with a ``rest``) if the SQL ``condition`` holds, in one
    statement: all of them or none; return whether they were. Outside a transaction the check,
    the insert and the commit are then a single round trip to the database."""
    assert all(p.rest is None for p in pending)  # noqa: S101 - a big message goes to store()
    insert = rows.inserting(Message)
    sql = f"{insert.select(len(pending))} WHERE {condition} RETURNING id"
    messages = [p.message for p in pending]
    ids = [pk for (pk,) in rows.fetch_all(sql, insert.values(messages) + params)]
    if not ids:
        return False
    for message, pk in zip(messages, ids, strict=True):
        _saved(message, pk)
    return True


def _insert(messages: list[Message]) -> None:
    """INSERT the new rows, with one statement per run of them (see ``statements``), and set
    their primary keys.

    Django's ``create`` costs ~0.7 ms of Python per row here, ``bulk_create`` ~1.1 ms for one,
    both mostly compiling the query; the listener stores every message this way (outbox.rows).
    """
    insert = rows.inserting(Message)
    for part in statements(messages, lambda message: message):
        with connection.cursor() as cursor:
            cursor.execute(f"{insert.sql(len(part))} RETURNING id", insert.values(part))
            ids = [pk for (pk,) in cursor.fetchall()]
        for message, pk in zip(part, ids, strict=True):
            _saved(message, pk)


# The bodies one INSERT carries at most (but always one message): the statement holds them
# twice more, escaped, on its way to the database.
STATEMENT_BYTES = 4 * 1024 * 1024


def statements(
    items: list[T], message: Callable[[T], Message], max_rows: int | None = None
) -> list[list[T]]:
    """``items`` (each holding the ``message`` of a row to insert) in runs small enough for one
    INSERT: ``max_rows`` rows (as many as a statement may carry) and STATEMENT_BYTES of bodies
    at most, but always one."""
    max_rows = max_rows or rows.inserting(Message).max_rows
    runs: list[list[T]] = []
    size = 0
    for item in items:
        raw = message(item).raw
        if not runs or len(runs[-1]) >= max_rows or size + len(raw) > STATEMENT_BYTES:
            runs.append([])
            size = 0
        runs[-1].append(item)
        size += len(raw)
    return runs


def _saved(message: Message, pk: int) -> None:
    message.pk = pk
    message._state.adding = False
    message._state.db = connection.alias


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
