#!/usr/bin/env python
"""Benchmark: every console page of an admin and of a user, over HTTP, at 100,000 accounts.

Seeds a fresh database (PostgreSQL only: it inserts with INSERT … SELECT generate_series) with
one big domain — N accounts in an OU tree of --units OUs (1 + 10 + 100 + 1,000 by default),
--messages messages with one delivery attempt each, two send-as aliases per account and 5,000
policy changes — and a small domain of 1,000 accounts and 5,000 messages, then VACUUM ANALYZE
(autovacuum may be off or behind). The admin administers both domains; the user has 2,000
messages. It starts gunicorn (2 workers) on a free loopback port, logs in as each over HTTP,
requests every page 3 times untimed (both workers warm), then --requests times, sequentially.
p95 is bench/common's percentile: with 20 requests, the slowest one. The query count of each
page is read once in-process with Django's test client. Prints one line per page and the worst
p95; asserts nothing.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
      .venv/bin/python bench/console.py --accounts 100000 --messages 500000 --units 1111

The bench's database is DATABASE_URL's server with the name sendgate_bench_<--name> (dropped
and created afresh; --reuse measures what an earlier run seeded, --only PAGE… some pages only).
--record appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, isolated_env, percentile, record, setup_django  # noqa: E402

PASSWORD = "bench password 1"  # noqa: S105 - a throw-away database
SMALL_ACCOUNTS = 1_000
SMALL_MESSAGES = 5_000
USER_MESSAGES = 2_000
POLICY_CHANGES = 5_000
# Pages the console loads with htmx (asked for as a page, some redirect to the full page).
HTMX_PARTIALS = {
    "delivery_counters",
    "small_delivery_counters",
    "policy_branch",
    "unit_policy_form",
    "propagation_progress",
    "unit_branch",
    "unit_search",
}
WARM_UP = 3  # untimed requests of every page first (gunicorn's two workers both warm)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--units", type=int, default=1_111, help="OUs: 1 + 10 + 100 + 1,000 …")
    parser.add_argument("--requests", type=int, default=20, help="requests per page")
    parser.add_argument("--name", default="console", help="database: sendgate_bench_<name>")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the database seeded by an earlier run"
    )
    parser.add_argument("--only", nargs="*", default=[], help="measure only these pages")
    return parser.parse_args()


# --- seeding ----------------------------------------------------------------------------------


def build_units(domain, total: int) -> list[int]:
    """A tree of ``total`` OUs, ten children per OU level by level; returns the leaves' ids."""
    from directory.models import OrgUnit

    root = OrgUnit.objects.create(domain=domain, name=domain.name)
    level, made = [root], 1
    leaves = [root]
    depth = 0
    while made < total:
        depth += 1
        children = []
        for parent in level:
            for i in range(10):
                if made + len(children) >= total:
                    break
                children.append(
                    OrgUnit(domain=domain, parent=parent, name=f"{parent.name[:20]}-{depth}{i}")
                )
        children = OrgUnit.objects.bulk_create(children)
        made += len(children)
        level = leaves = children
    return [unit.pk for unit in leaves]


def give_columns_defaults() -> None:
    """Database defaults from the models' defaults, for the tables seeded with INSERT … SELECT.

    The inserts name the columns they care about; a NOT NULL column added to a model later (with
    a default) then gets its default instead of failing the seeding. Throw-away database only.
    """
    from django.db import connection
    from django.db.models import CharField, TextField

    from directory.models import Account
    from gateways.models import SendAsAlias
    from outbox.models import DeliveryAttempt, Message
    from policy.models import PolicyChange

    with connection.cursor() as cur:
        for model in (Account, SendAsAlias, Message, DeliveryAttempt, PolicyChange):
            for field in model._meta.concrete_fields:
                if field.null or field.primary_key:
                    continue
                if field.has_default():
                    default = field.get_default()
                elif isinstance(field, CharField | TextField):
                    default = ""
                else:
                    continue
                cur.execute(
                    f'ALTER TABLE "{model._meta.db_table}" ALTER COLUMN "{field.column}" '
                    "SET DEFAULT %s",
                    [field.get_db_prep_save(default, connection)],
                )


def seed_domain(name: str, accounts: int, messages: int, units: int, first_account: str):
    """One domain: accounts over the OU leaves, messages over 90 days with one attempt each."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from directory.models import Account, Domain
    from policy.models import OutboundPolicy

    domain = Domain.objects.create(name=name)
    OutboundPolicy.objects.create(domain=domain)
    leaves = build_units(domain, units)
    person = Account.objects.create_user(first_account, PASSWORD)
    unusable = make_password(None)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO directory_account (password, is_superuser, email, display_name, domain_id,
                org_unit_id, is_active, date_joined, gateways_allowed, policy_version,
                reply_from_received_address)
            SELECT %s, false, 'user' || g || '@' || %s, '', %s, (%s::int[])[1 + g %% %s], true,
                now(), false, 0, true
            FROM generate_series(1, %s) g
            """,
            [unusable, name, domain.pk, leaves, len(leaves), accounts - 1],
        )
        cur.execute(
            """
            INSERT INTO gateways_sendasalias (account_id, display_name, address, reply_to,
                treat_as_alias, is_default, state, confirmation_digest, confirmation_failures,
                created_at)
            SELECT a.id, '', 'alias' || n || '.' || a.email, '', true, false, 'verified', '', 0,
                now()
            FROM directory_account a CROSS JOIN generate_series(1, 2) n WHERE a.domain_id = %s
            """,
            [domain.pk],
        )
        # The person gets USER_MESSAGES of the messages; the rest go round the other accounts.
        cur.execute(
            """
            INSERT INTO outbox_message (account_id, domain_id, kind, from_address, recipients,
                pending_recipients, failed_recipients, subject, message_id, raw, state,
                created_at, next_attempt_at, attempt_count, last_route, last_reply, sent_at)
            SELECT CASE WHEN g <= %(mine)s THEN %(person)s ELSE ids[1 + g %% cardinality(ids)] END,
                %(domain)s, 'mail', 'sender@' || %(name)s, '["rcpt@elsewhere.test"]',
                CASE WHEN g %% 500 = 0 THEN '["rcpt@elsewhere.test"]'::jsonb ELSE '[]' END,
                '{}', 'Message ' || g, '<' || g || '@bench>', 'Subject: x\r\n\r\nx'::bytea,
                CASE WHEN g %% 500 = 0 THEN 'deferred' WHEN g %% 100 = 0 THEN 'failed'
                     ELSE 'sent' END,
                now() - g * interval '15 seconds' * (500000.0 / %(messages)s),
                now() + interval '10 minutes', 1, 'domain_gateway', '250 2.0.0 OK', now()
            FROM generate_series(1, %(messages)s) g,
                 (SELECT array_agg(id) ids FROM directory_account WHERE domain_id = %(domain)s) a
            """,
            {
                "mine": USER_MESSAGES if messages > USER_MESSAGES else 0,
                "person": person.pk,
                "domain": domain.pk,
                "name": name,
                "messages": messages,
            },
        )
        cur.execute(
            """
            INSERT INTO outbox_deliveryattempt (message_id, started_at, finished_at, route, rule,
                policy_version, server, envelope_from, outcome, reply)
            SELECT id, created_at, created_at, 'domain_gateway', 'no_alias_gateway', 0,
                'relay.test:587', from_address,
                CASE state WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'failed'
                     ELSE 'deferred' END, last_reply
            FROM outbox_message WHERE domain_id = %s
            """,
            [domain.pk],
        )
    return domain, person


def seed_policy_changes(domain, admin, n: int) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO policy_policychange (domain_id, org_unit_id, actor_id, actor_label,
                scope_label, created_at, old_setting, new_setting, note, version, applied_value,
                unit_ids, accounts_total, accounts_applied, cursor_pk, finished_at, superseded)
            SELECT %s, u.id, %s, %s, u.name, now() - g * interval '1 hour', 'inherit', 'allow', '',
                g, true, '[]', 100, 100, 0, now() - g * interval '1 hour', false
            FROM generate_series(1, %s) g
            JOIN LATERAL (SELECT id, name FROM directory_orgunit
                          WHERE domain_id = %s ORDER BY id OFFSET g %% 100 LIMIT 1) u ON true
            """,
            [domain.pk, admin.pk, admin.email, n, domain.pk],
        )


def seed(args) -> dict[str, float]:
    from django.db import connection

    from directory.models import Account

    give_columns_defaults()
    started = time.monotonic()
    big, _ = seed_domain("big.test", args.accounts, args.messages, args.units, "person@big.test")
    small, _ = seed_domain("small.test", SMALL_ACCOUNTS, SMALL_MESSAGES, 11, "first@small.test")
    admin = Account.objects.create_user("admin@big.test", PASSWORD)
    big.admins.add(admin)
    small.admins.add(admin)
    seed_policy_changes(big, admin, POLICY_CHANGES)
    seeded = time.monotonic() - started
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    return {"seed_seconds": seeded, "vacuum_seconds": time.monotonic() - started - seeded}


def seeded_objects() -> dict:
    """What the pages are requested for, found in the seeded database."""
    from directory.models import Account, Domain, OrgUnit
    from outbox.models import Message

    big, small = Domain.objects.get(name="big.test"), Domain.objects.get(name="small.test")
    user = Account.objects.get(email="person@big.test")
    return {
        "big": big,
        "small": small,
        "admin": Account.objects.get(email="admin@big.test"),
        "user": user,
        "division": OrgUnit.objects.filter(domain=big, parent=big.root_unit).order_by("name")[0],
        "team": OrgUnit.objects.filter(domain=big, accounts__isnull=False).order_by("pk")[0],
        "message": Message.objects.filter(domain=big).order_by("-pk")[0],
        "own_message": Message.objects.filter(account=user).order_by("-pk")[0],
    }


# --- pages ------------------------------------------------------------------------------------


def admin_pages(s: dict) -> list[tuple[str, str]]:
    from django.urls import reverse

    big, small, team, division = s["big"], s["small"], s["team"], s["division"]
    log = reverse("delivery_log", args=[big.pk])
    audit = reverse("audit_log", args=[big.pk])
    members = reverse("unit_detail", args=[big.pk, team.pk])
    return [
        ("domains", reverse("domain_list")),
        ("delivery_log", log),
        ("delivery_log_last", log + "?last=1"),
        ("delivery_log_deferred", log + "?state=deferred"),
        ("delivery_log_sender", log + "?account=user42%40"),
        ("delivery_log_route", log + "?route=user_gateway"),  # a route no message took
        ("delivery_counters", reverse("delivery_counters", args=[big.pk])),
        ("delivery_detail", reverse("delivery_detail", args=[big.pk, s["message"].pk])),
        ("small_delivery_log", reverse("delivery_log", args=[small.pk])),
        ("small_delivery_counters", reverse("delivery_counters", args=[small.pk])),
        ("policy", reverse("domain_policy", args=[big.pk])),
        ("policy_branch", reverse("policy_branch", args=[big.pk, division.pk]) + "?open=1"),
        ("unit_policy_form", reverse("unit_policy", args=[big.pk, division.pk])),
        ("propagation_progress", reverse("propagation_progress", args=[big.pk])),
        ("audit_log", audit),
        ("audit_log_last", audit + "?last=1"),
        ("units", reverse("unit_list", args=[big.pk])),
        ("unit_branch", reverse("unit_branch", args=[big.pk, division.pk]) + "?open=1"),
        ("unit_detail", members),
        ("unit_detail_last", members + "?last=1"),
        ("unit_detail_root", reverse("unit_detail", args=[big.pk, big.root_unit.pk])),
        ("unit_search", reverse("unit_search", args=[big.pk]) + "?q=-3&name=parent"),
        ("dkim", reverse("dkim_keys", args=[big.pk])),
        ("sign_in", reverse("domain_sign_in", args=[big.pk])),
    ]


def user_pages(s: dict) -> list[tuple[str, str]]:
    from django.urls import reverse

    sent = reverse("sent_list")
    return [
        ("sent", sent),
        ("sent_last", sent + "?last=1"),
        ("sent_detail", reverse("sent_detail", args=[s["own_message"].pk])),
        ("compose", reverse("compose")),
        ("send_as", reverse("alias_list")),
        ("app_passwords", reverse("app_password_list")),
        ("security", reverse("security")),
    ]


def count_queries(email: str, pages: list[tuple[str, str]]) -> dict[str, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from directory.models import Account

    client = Client()
    client.force_login(Account.objects.get(email=email))
    client.get(pages[0][1], HTTP_HOST="127.0.0.1")  # a session's first request does more, once
    counts = {}
    for name, url in pages:
        with CaptureQueriesContext(connection) as captured:
            headers = {"HX-Request": "true"} if name in HTMX_PARTIALS else {}
            response = client.get(url, HTTP_HOST="127.0.0.1", headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {response.status_code}")
        counts[name] = len(captured)
    return counts


class Browser:
    """A logged-in HTTP client with a cookie jar (urllib: no extra dependency)."""

    def __init__(self, base: str, email: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with self.opener.open(base + "/login/", timeout=60) as response:
            form = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"username": email, "password": PASSWORD, "csrfmiddlewaretoken": token}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - http on loopback
            base + "/login/", data=data, headers={"Referer": base + "/login/"}
        )
        with self.opener.open(request, timeout=60) as response:
            if "/login/" in response.url:
                raise SystemExit(f"could not log in as {email}")

    def get(self, path: str, htmx: bool = False) -> tuple[float, str]:
        request = urllib.request.Request(  # noqa: S310 - http on loopback
            self.base + path, headers={"HX-Request": "true"} if htmx else {}
        )
        started = time.perf_counter()
        with self.opener.open(request, timeout=60) as response:
            body = response.read().decode()
            if response.status != 200 or "/login/" in response.url:
                raise SystemExit(f"{path}: {response.status} {response.url}")
        return (time.perf_counter() - started) * 1000, body


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()  # noqa: S310 - loopback
            return server, base
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def main() -> None:
    args = parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit(
            "bench/console.py seeds with PostgreSQL's generate_series: set DATABASE_URL"
        )
    env = isolated_env(args.name, recreate=not args.reuse)
    env.update(
        DJANGO_SECURE_COOKIES="0", DJANGO_SECURE_SSL_REDIRECT="0", SENDGATE_LOG_LEVEL="WARNING"
    )
    setup_django(env)
    if not args.reuse:
        took = seed(args)
        print(
            f"seed_seconds={took['seed_seconds']:.1f} "
            f"vacuum_analyze_seconds={took['vacuum_seconds']:.1f}"
        )
    s = seeded_objects()
    plan = [(s["admin"].email, admin_pages(s)), (s["user"].email, user_pages(s))]
    if args.only:
        plan = [(email, [p for p in pages if p[0] in args.only]) for email, pages in plan]
        plan = [(email, pages) for email, pages in plan if pages]
    query_counts = {}
    for email, pages in plan:
        query_counts.update(count_queries(email, pages))

    server, base = start_server(env)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"loadavg_before={load_before}", flush=True)
    lines = []
    worst = 0.0
    try:
        browsers = [(Browser(base, email), pages) for email, pages in plan]
        # Warm-up: each gunicorn worker opens its connection and compiles its templates once.
        for browser, pages in browsers:
            for name, url in pages * WARM_UP:
                browser.get(url, htmx=name in HTMX_PARTIALS)
        for browser, pages in browsers:
            for name, url in pages:
                htmx = name in HTMX_PARTIALS
                times = [browser.get(url, htmx)[0] for _ in range(args.requests)]
                p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
                worst = max(worst, p95)
                line = f"page={name} p50_ms={p50:.1f} p95_ms={p95:.1f} queries={query_counts[name]}"
                print(line, flush=True)
                lines.append(line)
    finally:
        server.terminate()
        server.wait(timeout=30)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    summary = [
        f"console_p95_ms_max={worst:.1f}",
        f"loadavg_before={load_before} loadavg_after={load}",
    ]
    print("\n".join(summary))
    if args.record:
        command = "DATABASE_URL=postgres://… .venv/bin/python " + " ".join(sys.argv)
        record("Console pages at scale (bench/console.py)", command, lines + summary)


if __name__ == "__main__":
    main()
