"""Keep a worker's SMTP sessions open between its tasks.

Opening a session to a gateway costs a TCP handshake, TLS and AUTH: far more than sending one
small message. With messages trickling in, every task would pay it again. So each worker process
keeps one event loop, running in a thread of its own, and the sessions its tasks leave behind
stay open there for a few seconds, ready for the next task to the same server:

- keyed by the whole ``Target`` (host, port, security and credentials): a changed password or a
  renewed sign-in token is a new key, so a session logged in with old credentials is never used
  again and simply ages out;
- idle at most SENDGATE_SMTP_IDLE_SECONDS (then QUIT), at most SENDGATE_SMTP_IDLE_MAX idle sessions
  per process (the least recently used is closed first);
- a session the server closed while it sat idle is dropped when it is taken (the loop runs all the
  time, so it notices); the Sender retries once on a fresh one if the server hangs up just then.

The loop runs in a thread because between tasks (and between rounds of a batch) the worker's own
thread does database work and waits for Celery: timers (the idle timeout) and the servers' hang-ups
are handled meanwhile. The thread is started on first use in each process, so a forked Celery
child gets its own; the loop never touches the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.conf import settings

from .smtp import Connection, Target

log = logging.getLogger("sendgate.smtp")

T = TypeVar("T")


class SessionPool:
    """Idle, authenticated sessions by target. Only ever used on the loop's own thread."""

    def __init__(self) -> None:
        # (target, connection) -> the timer that closes it; oldest first.
        self._idle: OrderedDict[tuple[Target, Connection], asyncio.TimerHandle] = OrderedDict()

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, target: Target) -> Connection | None:
        """The most recently used idle session to ``target`` that is still open, or None."""
        for key in reversed(list(self._idle)):
            if key[0] != target:
                continue
            connection = key[1]
            self._idle.pop(key).cancel()
            if connection.client is not None and connection.client.is_connected:
                return connection
            connection.drop()  # the server hung up while it was idle
        return None

    def give_back(self, target: Target, connection: Connection) -> None:
        """Keep ``connection`` for the next task, or close it if it cannot carry another message."""
        client = connection.client
        limit = settings.SENDGATE_SMTP_IDLE_MAX
        if connection.broken or client is None or not client.is_connected or limit <= 0:
            _close_soon(connection)
            return
        connection.transcript = []  # the next user starts its own transcript
        key = (target, connection)
        loop = asyncio.get_running_loop()
        self._idle[key] = loop.call_later(settings.SENDGATE_SMTP_IDLE_SECONDS, self._expire, key)
        while len(self._idle) > limit:
            (_target, oldest), timer = self._idle.popitem(last=False)
            timer.cancel()
            _close_soon(oldest)

    def _expire(self, key: tuple[Target, Connection]) -> None:
        if self._idle.pop(key, None) is not None:
            _close_soon(key[1])

    async def close_all(self) -> None:
        """QUIT every idle session (worker shutdown)."""
        idle = list(self._idle.items())
        self._idle.clear()
        for _key, timer in idle:
            timer.cancel()
        await asyncio.gather(*(key[1].close() for key, _timer in idle), return_exceptions=True)


_closing: set[asyncio.Task[None]] = set()  # strong references until each QUIT is done


def _close_soon(connection: Connection) -> None:
    task = asyncio.get_running_loop().create_task(connection.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


class WorkerLoop:
    """One event loop per process, in a daemon thread, with the process's SessionPool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool = SessionPool()

    @property
    def pool(self) -> SessionPool:
        """This process's pool (used only from coroutines run on the loop)."""
        self._running_loop()
        return self._pool

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                # First use in this process (a forked child inherits its parent's attributes,
                # not its threads): start our own.
                self._pid = os.getpid()
                self._loop = asyncio.new_event_loop()
                self._pool = SessionPool()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="smtp-loop", daemon=True
                )
                self._thread.start()
            return self._loop

    def time(self) -> float:
        """The loop's clock (deadlines handed to coroutines are in its time)."""
        return self._running_loop().time()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for it."""
        return self.wait(self.start(coroutine))

    def start(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coroutine`` on the loop; this thread goes on meanwhile (``wait`` for it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())

    @staticmethod
    def wait(future: concurrent.futures.Future[T]) -> T:
        """The result of a started coroutine. If this thread is interrupted while waiting
        (Celery's soft time limit), the coroutine is cancelled, not left running."""
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """QUIT the idle sessions and stop the loop; a later ``run`` starts a new one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._pool.close_all(), loop).result(timeout=5)
            asyncio.run_coroutine_threadsafe(_finish_closing(), loop).result(timeout=5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("SMTP sessions did not close in time at shutdown")
        loop.call_soon_threadsafe(loop.stop)
        assert thread is not None  # set together with the loop
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


async def _finish_closing() -> None:
    await asyncio.gather(*list(_closing), return_exceptions=True)


# The process's loop and its sessions (used by delivery; the connection test never uses it).
worker_loop = WorkerLoop()
