#!/usr/bin/env python
"""Benchmark: check and import a CSV of N new accounts, then send their invitation mails.

Runs the same functions as the console and `manage.py account import` on their own database
(see bench/common.py): the check, the import (one transaction) and the invitations that a worker
sends afterwards in batches. Prints seconds per step; asserts nothing about speed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/account_import.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import isolated_env, record, setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    setup_django(isolated_env("account_import"))
    from django.db import connection

    from directory.account_import import check_csv
    from outbox.models import Message
    from outbox.onboarding import create_domain, import_accounts, send_import_invitations

    lines = [f"database={connection.vendor} rows={args.rows}"]
    name = "bench-import.example"
    domain, admin = create_domain(name, f"admin@{name}", verified=True, password="x" * 12)
    data = "".join(f"user{i:06d}@{name},Person {i},\n" for i in range(args.rows)).encode()
    started = time.perf_counter()
    plan = check_csv(domain, data, "bench.csv")
    checked = time.perf_counter() - started
    assert plan.ok, plan.errors[:3]
    started = time.perf_counter()
    job = import_accounts(plan, admin, invite=True)
    imported = time.perf_counter() - started
    started = time.perf_counter()
    send_import_invitations(job.pk)
    invited = time.perf_counter() - started
    mails = Message.objects.filter(account__domain=domain).count()
    lines.append(
        f"check_seconds={checked:.2f} import_seconds={imported:.2f} "
        f"invitations_seconds={invited:.2f} invitation_mails={mails}"
    )
    print(lines[-1])
    prefix = "DATABASE_URL=postgres://… " if connection.vendor == "postgresql" else ""
    record(
        "Account import",
        f"{prefix}.venv/bin/python bench/account_import.py --rows {args.rows}",
        lines,
    )


if __name__ == "__main__":
    main()
