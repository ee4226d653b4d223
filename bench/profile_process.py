"""Run a Django management command under cProfile in every thread, and count its SQL statements.

    .venv/bin/python bench/profile_process.py OUT_PREFIX submission --reuse-port --port 2525

cProfile sees only the thread that enabled it, and the listener does its database work in
Django's sync thread: every thread gets a profiler here, timed by that thread's CPU clock (the
machine is shared: waiting is not cost), and the merged statistics go to
``OUT_PREFIX.pstats`` when the command ends (SIGTERM ends the listener cleanly). The number of
SQL statements the process ran goes to ``OUT_PREFIX.queries``. ``bench/throughput.py
--profile DIR`` starts its listeners this way.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_queries = 0


def _profiled_run(original):
    def run(self) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU, not waiting
        with _lock:
            _profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    return run


def _count_queries(sender, connection, **kwargs) -> None:
    def counting(execute, sql, params, many, context):
        global _queries
        _queries += 1
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(counting)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    import django
    from django.core.management import execute_from_command_line
    from django.db.backends.signals import connection_created

    django.setup()
    connection_created.connect(_count_queries)
    main_profile = cProfile.Profile(time.thread_time)  # CPU, not waiting
    main_profile.enable()
    try:
        execute_from_command_line(["manage.py", *argv])
    finally:
        main_profile.disable()
        with _lock:
            stats = pstats.Stats(main_profile)
            for profile in _profiles:
                profile.disable()
                stats.add(profile)
        stats.dump_stats(f"{out}.pstats")
        Path(f"{out}.queries").write_text(f"{_queries}\n")


if __name__ == "__main__":
    main()
