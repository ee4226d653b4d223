#!/usr/bin/env python
"""Benchmark: the sweeper's due query on a big outbox, and which indexes its plan uses.

Seeds DATABASE_URL's database (PostgreSQL only, and only one whose name contains "bench": it is
dropped and created afresh) with one domain, one account and --sent sent messages over 90 days,
a backlog of --deferred deferred messages whose retries fall over an hour of which
--due-fraction has passed (that share of them is due now; default a twelfth), 100 queued
messages and 220 claimed ones (20 of them with a dead worker's lease), with INSERT … SELECT
generate_series, then VACUUM ANALYZE. It times ``delivery.due_message_ids()`` as the sweeper
calls it and as a wake-up task calls it, and the single OR query it replaced without the
partial indexes (dropped in a transaction that is rolled back), --runs times each, and prints
p50/p95 and the indexes each plan uses (EXPLAIN ANALYZE of the SQL the code sent). Asserts
nothing.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sendgate_bench \\
      .venv/bin/python bench/due_query.py --sent 500000 --deferred 22000

--reuse measures what an earlier run seeded; --record appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile, record  # noqa: E402

QUEUED = 100
SENDING_LIVE = 200
SENDING_DEAD = 20
PLAN_NODE = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)(?: using| on) (\w+)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sent", type=int, default=500_000)
    parser.add_argument("--deferred", type=int, default=22_000)
    parser.add_argument("--due-fraction", type=float, default=1 / 12)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reuse", action="store_true", help="keep what an earlier run seeded")
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    return parser.parse_args()


def configure(recreate: bool) -> None:
    url = os.environ.get("DATABASE_URL", "")
    base, _, name = url.rpartition("/")
    if not url.startswith("postgres") or "bench" not in name:
        raise SystemExit(
            "bench/due_query.py seeds PostgreSQL and drops its database first: set DATABASE_URL "
            "to a database whose name contains 'bench'"
        )
    if recreate:
        import psycopg

        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.setdefault("SENDGATE_VAR_DIR", tempfile.mkdtemp(prefix="sendgate-bench-due-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # a SECRET_KEY is not needed for a benchmark
    os.environ.setdefault("SENDGATE_LOG_LEVEL", "WARNING")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()


def seed(sent: int, deferred: int, due_fraction: float) -> float:
    """The outbox of a busy domain; returns the seconds it took (VACUUM ANALYZE included)."""
    from django.db import connection
    from django.utils import timezone

    from directory.models import Account, Domain, OrgUnit

    started = time.perf_counter()
    domain = Domain.objects.create(name="due.bench.test", verified_at=timezone.now())
    OrgUnit.objects.create(domain=domain, name=domain.name)
    account = Account.objects.create_user("sender@due.bench.test", None)
    # (state, rows, created_at, next_attempt_at, lease_until) as SQL over g = 1..rows
    kinds = [
        ("sent", sent, "now() - g * interval '90 days' / %(n)s", "created_at", "NULL"),
        (
            "deferred",
            deferred,
            "now() - interval '1 hour'",
            "now() + (g::float / %(n)s - %(due)s) * interval '1 hour'",
            "NULL",
        ),
        ("queued", QUEUED, "now()", "now() - interval '1 second'", "NULL"),
        ("sending", SENDING_LIVE, "now()", "now()", "now() + interval '5 minutes'"),
        (
            "sending",
            SENDING_DEAD,
            "now() - interval '1 hour'",
            "now()",
            "now() - g * interval '1 minute'",
        ),
    ]
    with connection.cursor() as cur:
        for state, rows, created_at, next_attempt_at, lease_until in kinds:
            cur.execute(
                f"""
                WITH g AS (SELECT g, {created_at} AS created_at FROM generate_series(1, %(n)s) g)
                INSERT INTO outbox_message (account_id, domain_id, kind, from_address, recipients,
                    pending_recipients, failed_recipients, subject, message_id, raw, state,
                    created_at, next_attempt_at, lease_until, attempt_count, last_route,
                    last_reply, sent_at)
                SELECT %(account)s, %(domain)s, 'mail', 'sender@due.bench.test',
                    '["rcpt@elsewhere.test"]', '[]', '{{}}', 'Message ' || g,
                    '<' || g || '.' || %(state)s || '@bench>', 'Subject: x\r\n\r\nx'::bytea,
                    %(state)s, created_at, {next_attempt_at}, {lease_until}, 1,
                    'domain_gateway', '', CASE WHEN %(state)s = 'sent' THEN created_at END
                FROM g
                """,  # noqa: S608 - the interpolated expressions are this script's own
                {
                    "n": rows,
                    "account": account.pk,
                    "domain": domain.pk,
                    "state": state,
                    "due": due_fraction,
                },
            )
        cur.execute("VACUUM ANALYZE outbox_message")
    return time.perf_counter() - started


def timed(call: Callable[[], list[int]], runs: int) -> tuple[float, float, int]:
    """p50 and p95 in ms over ``runs`` calls after one untimed call, and the rows it returned."""
    rows = len(call())
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 0.5), percentile(times, 0.95), rows


def plan_of(call: Callable[[], list[int]]) -> tuple[str, float]:
    """EXPLAIN ANALYZE of the one query ``call`` sends: the plan and its execution time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    [query] = queries.captured_queries
    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query['sql']}")
        plan = "\n".join(row[0] for row in cur.fetchall())
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return plan, float(execution.group(1)) if execution else 0.0


def measure(name: str, call: Callable[[], list[int]], runs: int, show_plan: bool) -> str:
    p50, p95, rows = timed(call, runs)
    plan, execution_ms = plan_of(call)
    used = sorted({index for _node, index in PLAN_NODE.findall(plan)})
    line = (
        f"query={name} rows={rows} p50_ms={p50:.2f} p95_ms={p95:.2f} "
        f"explain_analyze_ms={execution_ms:.2f} plan_uses={','.join(used)}"
    )
    print(line, flush=True)
    if show_plan:
        print(plan)
    return line


def main() -> None:
    args = parse_args()
    configure(recreate=not args.reuse)
    from django.conf import settings
    from django.db import connection, transaction
    from django.db.models import Count, Q
    from django.utils import timezone

    from outbound import delivery
    from outbox.models import Message

    if not args.reuse:
        print(f"seed_seconds={seed(args.sent, args.deferred, args.due_fraction):.1f}")
    counts = Message.objects.order_by("state").values_list("state").annotate(n=Count("pk"))
    print("messages " + " ".join(f"{state}={n}" for state, n in counts))

    wake_up_limit = settings.SENDGATE_BATCH_SIZE - 1

    def before(interrupted: bool = True, limit: int = 5000) -> list[int]:
        """The query as it was: one OR over both conditions (or the first), ordered, limited."""
        now = timezone.now()
        claimable = Q(state__in=["queued", "deferred"], next_attempt_at__lte=now)
        if interrupted:
            claimable |= Q(state="sending", lease_until__lt=now)
        rows = Message.objects.filter(claimable).order_by("next_attempt_at")
        return list(rows.values_list("pk", flat=True)[:limit])

    calls = {
        "sweeper": lambda: delivery.due_message_ids(),
        "wake_up": lambda: delivery.due_message_ids(limit=wake_up_limit, interrupted=False),
    }
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [measure(name, call, args.runs, args.plans) for name, call in calls.items()]
    # The baseline: the queries as they were, without the partial indexes, dropped inside a
    # transaction that is rolled back (PostgreSQL's DDL is transactional).
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("DROP INDEX message_due, message_sending_lease")
        lines.append(measure("sweeper_before", before, args.runs, args.plans))
        lines.append(
            measure(
                "wake_up_before",
                lambda: before(interrupted=False, limit=wake_up_limit),
                args.runs,
                args.plans,
            )
        )
        transaction.set_rollback(True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    summary = [f"runs={args.runs} loadavg_before={load_before} loadavg_after={load}"]
    print(summary[0])
    if args.record:
        command = "DATABASE_URL=postgres://…/sendgate_bench .venv/bin/python " + " ".join(sys.argv)
        record("The sweeper's due query (bench/due_query.py)", command, lines + summary)


if __name__ == "__main__":
    main()
