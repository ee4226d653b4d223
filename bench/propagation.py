#!/usr/bin/env python
"""Benchmark: propagate a root policy change to N accounts in a three-level OU tree.

Builds a throw-away domain on the configured database (DATABASE_URL, default: SQLite under a
temporary var dir) with N accounts spread over 1 + 10 + 100 OUs, starts a real Celery worker
process on the configured broker (its own queue), sends it one wake-up for no change (so the
broker and database connections are open, as in service), saves "allow" at the domain root and
times until the change is fully applied. Prints figures; asserts nothing about speed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sendgate_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python bench/propagation.py --accounts 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LEVEL_ONE = 10  # OUs under the root
LEVEL_TWO = 10  # OUs under each of those
INSERT_BATCH = 5000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None, help="first batch's id span")
    parser.add_argument(
        "--batch-seconds", type=float, default=None, help="time a batch aims at (0: fixed size)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench domain afterwards")
    return parser.parse_args()


def configure() -> None:
    """Own var dir and Celery queue, so the bench never meets another worker's tasks."""
    os.environ.setdefault("SENDGATE_VAR_DIR", tempfile.mkdtemp(prefix="sendgate-bench-"))
    os.environ["SENDGATE_CELERY_QUEUE"] = f"sendgate-bench-{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # a SECRET_KEY is not needed for a benchmark
    os.environ.setdefault("SENDGATE_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build_domain(accounts: int):
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from directory.models import Account, Domain, OrgUnit
    from policy.models import OutboundPolicy

    unusable = make_password(None)  # computed once: no hashing for 100,000 rows
    domain = Domain.objects.create(
        name=f"bench-{uuid.uuid4().hex[:8]}.test", verified_at=timezone.now()
    )
    root = OrgUnit.objects.create(domain=domain, name=domain.name)
    OutboundPolicy.objects.create(domain=domain)
    units = [root]
    for i in range(LEVEL_ONE):
        middle = OrgUnit.objects.create(domain=domain, parent=root, name=f"division-{i}")
        units.append(middle)
        units += [
            OrgUnit.objects.create(domain=domain, parent=middle, name=f"team-{i}-{j}")
            for j in range(LEVEL_TWO)
        ]
    admin = Account.objects.create_superuser(f"bench-admin@{domain.name}", None)
    for start in range(0, accounts, INSERT_BATCH):
        Account.objects.bulk_create(
            Account(
                email=f"user{n}@{domain.name}",
                domain=domain,
                org_unit=units[n % len(units)],
                password=unusable,
            )
            for n in range(start, min(start + INSERT_BATCH, accounts))
        )
    return domain, admin, len(units)


def start_worker(
    log: Path, batch_size: int | None, batch_seconds: float | None
) -> subprocess.Popen:
    env = dict(os.environ)
    if batch_size:
        env["SENDGATE_POLICY_BATCH_SIZE"] = str(batch_size)
    if batch_seconds is not None:
        env["SENDGATE_POLICY_BATCH_SECONDS"] = str(batch_seconds)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            os.environ["SENDGATE_CELERY_QUEUE"],
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            sys.exit(f"the Celery worker did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return worker


def clean_up(domain) -> None:
    """Set-based deletes (the ORM's collector would load every account to cascade)."""
    from django.db import connection, transaction

    from directory.models import Account, OrgUnit
    from policy.models import OutboundPolicy, PolicyChange, UnitOverride

    with transaction.atomic(), connection.cursor() as cursor:
        PolicyChange.objects.filter(domain=domain).delete()
        UnitOverride.objects.filter(org_unit__domain=domain).delete()
        cursor.execute(
            f"DELETE FROM {Account._meta.db_table} WHERE domain_id = %s "  # noqa: S608
            "AND NOT is_superuser",
            [domain.pk],
        )
        Account.objects.filter(domain=domain).delete()
        while OrgUnit.objects.filter(domain=domain).exists():  # leaves first: parent is PROTECT
            OrgUnit.objects.filter(domain=domain, children__isnull=True).delete()
        OutboundPolicy.objects.filter(domain=domain).delete()
        domain.delete()


def main() -> None:
    args = parse_args()
    configure()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from policy.models import PolicyChange
    from policy.service import set_domain_policy
    from policy.tasks import propagate_policy

    call_command("migrate", verbosity=0)
    print(f"database={connection.vendor} broker={settings.CELERY_BROKER_URL.split(':')[0]}")
    started = time.perf_counter()
    domain, admin, unit_count = build_domain(args.accounts)
    built = time.perf_counter() - started
    print(f"built {args.accounts} accounts in {unit_count} OUs in {built:.1f}s")

    log = Path(settings.VAR_DIR) / "bench-worker.log"
    worker = start_worker(log, args.batch_size, args.batch_seconds)
    try:
        # Warm-up, as in service: the web process has its broker connection open and the worker
        # its database connection. A wake-up for no change does both (its claim finds nothing).
        publish = time.perf_counter()
        propagate_policy.delay(0)
        print(f"first_publish_seconds={time.perf_counter() - publish:.3f} (warm-up, not timed)")
        time.sleep(1)
        rss_before = proc_status_kib(worker.pid, "VmRSS")
        saved = time.perf_counter()
        change = set_domain_policy(domain, True, admin)  # queues the task on commit
        picked_up = None  # the worker's claim sets the lease: the task has arrived
        while True:
            done = PolicyChange.objects.filter(pk=change.pk, finished_at__isnull=False).first()
            if done is not None:
                break
            if (
                picked_up is None
                and PolicyChange.objects.filter(pk=change.pk, lease_until__isnull=False).exists()
            ):
                picked_up = time.perf_counter() - saved
            if worker.poll() is not None:
                sys.exit(f"the worker died:\n{log.read_text()}")
            time.sleep(0.01)
        seconds = time.perf_counter() - saved
        peak = proc_status_kib(worker.pid, "VmHWM")
        rss_after = proc_status_kib(worker.pid, "VmRSS")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    applied = done.accounts_applied
    print(f"propagation_seconds={seconds:.3f}")
    if picked_up is not None:  # a propagation quicker than one poll may never show its lease
        print(f"pickup_seconds<={picked_up:.3f}")
    print(f"accounts_applied={applied} of {done.accounts_total}")
    print(f"accounts_per_second={applied / seconds:,.0f}")
    print(f"worker_rss_before_mib={rss_before / 1024:.1f}")
    print(f"worker_rss_after_mib={rss_after / 1024:.1f}")
    print(f"worker_peak_rss_mib={peak / 1024:.1f}")
    if not args.keep:
        clean_up(domain)


if __name__ == "__main__":
    main()
