#!/usr/bin/env python
"""Benchmark: the domain admin's accounts page at 100,000 accounts.

Builds a domain with N accounts over 1 + 10 + 100 OUs on the configured database (its own
database, see bench/common.py), then renders the accounts page through Django's test client (the
whole view and template, no HTTP server): the first page, a page deep in the list (keyset
"after"), the way back ("before"), a search by name and an OU + state filter. Prints the p50/p95
time and the number of SQL queries of each; asserts nothing about speed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/accounts_page.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import isolated_env, percentile, record, setup_django  # noqa: E402

INSERT_BATCH = 5000


def build(accounts: int):
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from directory.models import Account, Domain, OrgUnit
    from policy.models import OutboundPolicy

    domain = Domain.objects.create(name="bench.example", verified_at=timezone.now())
    root = OrgUnit.objects.create(domain=domain, name=domain.name)
    OutboundPolicy.objects.create(domain=domain)
    units = [root]
    for i in range(10):
        middle = OrgUnit.objects.create(domain=domain, parent=root, name=f"division-{i}")
        units.append(middle)
        units += [
            OrgUnit.objects.create(domain=domain, parent=middle, name=f"team-{i}-{j}")
            for j in range(10)
        ]
    admin = Account.objects.create_user(f"admin@{domain.name}", "bench password 1", domain=domain)
    domain.admins.add(admin)
    unusable = make_password(None)
    for start in range(0, accounts, INSERT_BATCH):
        Account.objects.bulk_create(
            Account(
                email=f"user{n:06d}@{domain.name}",
                display_name=f"Person {n}",
                domain=domain,
                org_unit=units[n % len(units)],
                is_active=n % 50 != 0,
                password=unusable,
            )
            for n in range(start, min(start + INSERT_BATCH, accounts))
        )
    return domain, admin, units


def measure(client, url: str, params: dict, rounds: int) -> tuple[float, float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    rows = response.content.decode().count('data-account="')
    return percentile(times, 0.5), percentile(times, 0.95), len(queries), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    env = isolated_env("accounts_page")
    # Django's test client calls itself "testserver" and speaks plain HTTP.
    env.update(DJANGO_ALLOWED_HOSTS="testserver", DJANGO_SECURE_SSL_REDIRECT="0")
    setup_django(env)
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    started = time.perf_counter()
    domain, admin, units = build(args.accounts)
    # Fresh planner statistics, as a database that has been running for a while has (the bulk
    # insert leaves none, and autovacuum may be off on a developer's server).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(
        f"database={connection.vendor} built {args.accounts} accounts in "
        f"{time.perf_counter() - started:.1f}s"
    )
    client = Client()
    client.force_login(admin)
    url = reverse("account_list", args=[domain.pk])
    cases = [
        ("first page", {}),
        ("deep page (after)", {"after": f"user{args.accounts // 2:06d}@{domain.name}"}),
        ("back (before)", {"before": f"user{args.accounts // 2:06d}@{domain.name}"}),
        ("search by name", {"q": "Person 4242"}),
        ("OU + state filter", {"unit": units[57].pk, "state": "active"}),
    ]
    lines = [f"database={connection.vendor} accounts={args.accounts} rounds={args.rounds}"]
    for label, params in cases:
        p50, p95, queries, rows = measure(client, url, params, args.rounds)
        lines.append(
            f"{label}: p50_ms={p50:.1f} p95_ms={p95:.1f} queries={queries} rows_shown={rows}"
        )
        print(lines[-1])
    command = (
        f".venv/bin/python bench/accounts_page.py --accounts {args.accounts} --rounds {args.rounds}"
    )
    if connection.vendor == "postgresql":
        command = "DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> " + command
    record("Accounts page", command, lines)


if __name__ == "__main__":
    main()
