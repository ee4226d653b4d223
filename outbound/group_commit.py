"""The listener's database work: its one database thread, and the group commit.

Every session of a listener process hands its message to one ``GroupCommit``, which stores all
messages waiting at that moment with one INSERT, a statement that commits by itself: a commit
(and its flush to disk) per group instead of per message. While a group is being stored the
next one gathers, so a lone message waits for nobody and a busy listener commits in bigger
groups. Each message's session learns its outcome only after the commit: a ``250`` is
never answered for a row that is not committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction

from outbox.models import Message
from outbox.queue import (
    Pending,
    count_queued,
    in_one_statement,
    statements,
    store,
    store_if,
    wake_up,
)

from . import credentials

log = logging.getLogger("sendgate.submission")


# The one thread of a listener process that uses the database (Django's connections are per
# thread). asgiref's sync_to_async(thread_sensitive=True) keeps one such thread too, at three
# times the CPU per call here (it carries context variables and thread-critical locals over).
_DB_THREAD = ThreadPoolExecutor(1, thread_name_prefix="listener-db")


async def in_db(function: Callable, *args: Any) -> Any:
    """Run ``function`` in the database thread; drop a broken connection to reconnect next time."""
    return await asyncio.get_running_loop().run_in_executor(_DB_THREAD, _guarded, function, *args)


def _guarded(function: Callable, *args: Any) -> Any:
    try:
        return function(*args)
    except DatabaseError:
        connection.close()
        raise
    finally:
        # With DEBUG (the demo) Django keeps every query of this long-lived process, each
        # INSERT with its message's bytes: a listener that never serves a page drops them.
        connection.queries_log.clear()


@dataclass(frozen=True)
class Submission:
    """One message to store: ``prepare`` checks it and builds its row (or raises ``Refused``);
    the row is inserted only if the app password it was sent with is still valid, checked right
    before the INSERT (in the same statement, for a lone message)."""

    app_password_id: int
    prepare: Callable[[], Pending]


# Whatever a submission's ``prepare`` raised (an exception, answered alone), its stored Message,
# or None: its login was revoked meanwhile.
Outcome = Message | Exception | None

# A group's size is bounded so one commit does not hold many sessions' big messages at once.
MAX_GROUP = 200


def store_group(submissions: list[Submission]) -> list[Outcome]:
    """Store the group's messages: those of still valid logins, the whole ones with one INSERT
    (a big one on its own); each INSERT commits by itself.

    A lone whole message is stored with one statement: its failure is raised, as a failed commit
    would be. Otherwise a failure is narrowed down to the message at fault.
    """
    outcomes: list[Outcome] = [None] * len(submissions)
    prepared: list[tuple[int, Pending]] = []
    for n, submission in enumerate(submissions):
        try:
            # Before any statement: whatever a check does cannot break the group's.
            prepared.append((n, submission.prepare()))
        except Exception as exc:  # noqa: BLE001 - a refusal (or a bug): answered alone
            outcomes[n] = exc
    # Checked afresh (not from a session's cache) right before the INSERT: no message is
    # accepted on a login revoked while the message was being sent. (In a transaction, this
    # check would see no more: at READ COMMITTED it does not hold back a revocation either.)
    logins = {s.app_password_id for s in submissions}
    if _store_at_once(prepared, logins, outcomes, alone=len(submissions) == 1):
        return outcomes
    valid = credentials.valid_app_password_ids(logins)
    for n, submission in enumerate(submissions):
        if submission.app_password_id not in valid:
            outcomes[n] = None  # whatever else was wrong with its message
    ready = [(n, p) for n, p in prepared if submissions[n].app_password_id in valid]
    _store_apart(ready, outcomes)
    return outcomes


def _store_at_once(
    prepared: list[tuple[int, Pending]], logins: set[int], outcomes: list[Outcome], alone: bool
) -> bool:
    """The usual case in one round trip: whole messages, every login still valid, all stored by
    one statement that checks the logins, inserts and commits. Whether it did; if not, nothing
    is stored and the group is taken apart, unless it was a lone message: then the outcome is
    known (None, its login was revoked) and its failure is raised, as a failed commit would be.
    """
    pending = [p for _n, p in prepared]
    if not pending or any(p.rest is not None for p in pending):
        return False
    condition, params = credentials.all_valid_condition(logins)
    if not in_one_statement(pending, len(params)):
        return False
    try:
        with _own_statement():
            stored = store_if(pending, condition, params)
    except Exception:
        if alone:
            raise
        return False  # narrowed down by the caller
    if stored:
        for n, p in prepared:
            outcomes[n] = p.message
    return stored or alone


def _store_apart(ready: list[tuple[int, Pending]], outcomes: list[Outcome]) -> None:
    """Store ``ready`` so that a failing message fails alone: the whole ones a statement's worth
    at a time (one by one if that fails), each big one in a transaction of its own."""
    whole = [(n, pending) for n, pending in ready if pending.rest is None]
    for run in statements(whole, lambda item: item[1].message):
        try:
            # One statement: all of the run is stored, or none of it. No transaction around
            # it, whose BEGIN and COMMIT would cost two more round trips.
            with _own_statement():
                store([pending for _n, pending in run])
            for n, pending in run:
                outcomes[n] = pending.message
        except Exception:  # noqa: BLE001 - narrowed down below
            # Only whole messages are tried again: their bytes are all in the row still to insert.
            for n, pending in run:
                _store_one(n, pending, outcomes)
    for n, pending in ready:
        if pending.rest is not None:
            _store_one(n, pending, outcomes)


def _own_statement() -> AbstractContextManager:
    """Nothing around a statement that commits by itself; a savepoint inside a caller's
    transaction, which a failing statement would otherwise abort."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _store_one(n: int, pending: Pending, outcomes: list[Outcome]) -> None:
    try:
        with transaction.atomic():  # a big message's chunks are committed with its row
            store([pending])
        outcomes[n] = pending.message
    except Exception as exc:  # noqa: BLE001 - recorded on this message, answered alone
        outcomes[n] = exc


class GroupCommit:
    """Stores the messages of every session of a listener process, a group at a time, and wakes
    a delivery worker after each commit (through ``WakeUps``, so not once per group)."""

    def __init__(self, wake_ups: WakeUps) -> None:
        self.wake_ups = wake_ups
        self.waiting: list[tuple[Submission, asyncio.Future[Outcome]]] = []
        self.storing: asyncio.Task | None = None

    async def store(self, submission: Submission) -> Outcome:
        """Return the outcome of ``submission`` once its group is committed (or raise)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append((submission, future))
        if self.storing is None or self.storing.done():
            self.storing = asyncio.create_task(self._store_waiting())
        # shield: a session that hangs up does not cancel its group's answer for the others.
        return await asyncio.shield(future)

    async def _store_waiting(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting[:MAX_GROUP], self.waiting[MAX_GROUP:]
            try:
                outcomes = await in_db(store_group, [submission for submission, _ in group])
            except Exception as exc:  # noqa: BLE001 - nothing of the group is stored: all get it
                for _submission, future in group:
                    future.set_exception(exc)
                continue
            for (_submission, future), outcome in zip(group, outcomes, strict=True):
                future.set_result(outcome)
            stored = [outcome for outcome in outcomes if isinstance(outcome, Message)]
            count_queued(stored)
            if stored:
                self.wake_ups.wake(len(stored))


# At most one wake-up per this many seconds per listener process: a worker's ``deliver_due``
# takes everything due, so more would only cost the broker and the listener's CPU (each publish
# is milliseconds of kombu). The first commit after a quiet spell wakes a worker at once.
WAKE_UP_INTERVAL = 0.1
# Once a wake-up is sent for BUSY_MESSAGES or more, the next waits up to BUSY_WAKE_UP_INTERVAL:
# under load, bigger batches, each paying its claim, routing and DKIM key queries once. In
# bench/throughput.py 0.25 s delivered 13% more per second than 0.1 s (0.5 s no more than
# 0.25 s); messages that come one by one keep the short interval and its latency.
BUSY_MESSAGES = 10
BUSY_WAKE_UP_INTERVAL = 0.25


class WakeUps:
    """Wakes a delivery worker after commits, at most once per ``interval`` (``busy_interval``
    after a wake-up for BUSY_MESSAGES or more), and never leaves a commit without a wake-up sent
    after it (one is sent at the end of the interval)."""

    def __init__(
        self,
        interval: float = WAKE_UP_INTERVAL,
        send: Callable[[], None] = wake_up,
        busy_interval: float = BUSY_WAKE_UP_INTERVAL,
    ) -> None:
        self.interval, self.busy_interval, self.send = interval, busy_interval, send
        self.last_sent = float("-inf")
        self.scheduled = False
        self.waiting = 0  # messages committed since the last wake-up was sent
        self.last_carried = 0  # messages the last wake-up was sent for

    def wake(self, messages: int = 1) -> None:
        """``messages`` were committed just now."""
        self.waiting += messages
        if self.scheduled:
            return  # the scheduled one is sent after this commit
        loop = asyncio.get_running_loop()
        busy = self.last_carried >= BUSY_MESSAGES
        delay = self.last_sent + (self.busy_interval if busy else self.interval) - loop.time()
        if delay <= 0:
            self._send_now()
        else:
            self.scheduled = True
            loop.call_later(delay, self._send_scheduled)

    def _send_scheduled(self) -> None:
        self.scheduled = False
        self._send_now()

    def _send_now(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_sent = loop.time()
        self.last_carried, self.waiting = self.waiting, 0
        # Publishing blocks on the broker: off the event loop, not in the database thread.
        loop.run_in_executor(None, self._send_logged)

    def _send_logged(self) -> None:
        try:
            self.send()
        except Exception:  # the messages are committed; the sweeper finds them
            log.exception("submission: delivery wake-up not sent")
