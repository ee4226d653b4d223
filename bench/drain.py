"""How fast do Celery workers drain a full outbox? Prints drain_messages_per_second=<n>.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/drain.py --messages 10000

Puts N small messages from 1,000 senders into the outbox, then VACUUM ANALYZE: half from aliases
whose per-user gateways are 10 loopback sinks requiring STARTTLS + AUTH, half through the domain
gateway (also STARTTLS + AUTH). Then starts real workers, hands the outbox to them in batches
(what the beat sweeper does), and measures until every message is accepted by a sink. Uses its
own database (sendgate_bench_drain on PostgreSQL, a temporary SQLite file otherwise) and its own
queue.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    isolated_env,
    peak_rss_mib,
    percentile,
    process_tree,
    record,
    setup_django,
    start_sink,
    start_workers,
)

SENDERS = 1000
PARTNER_SINKS = 10
PASSWORD = "bench-password"  # noqa: S105 - the sinks accept any credentials


def seed(messages: int, ports: list[int]) -> list[int]:
    """Domain, 1,000 accounts, 500 aliases with per-user gateways, and the queued messages."""
    from django.db import connection
    from django.utils import timezone

    from directory.models import Account, Domain, OrgUnit
    from gateways.models import SendAsAlias, SmtpServer
    from outbox.models import Message
    from policy.models import OutboundPolicy

    def server(port: int) -> SmtpServer:
        return SmtpServer(
            host="localhost", port=port, username="bench", password=PASSWORD, last_test_ok=True
        )

    gateway = server(ports[-1])
    gateway.save()
    domain = Domain.objects.create(
        name="bench.example", outbound_gateway=gateway, verified_at=timezone.now()
    )
    unit = OrgUnit.objects.create(domain=domain, name="bench.example")
    OutboundPolicy.objects.create(domain=domain, allow_user_gateways=True, version=1)
    Account.objects.bulk_create(
        Account(
            email=f"user{n}@bench.example",
            domain=domain,
            org_unit=unit,
            password="!",
            gateways_allowed=True,
            policy_version=1,
        )
        for n in range(SENDERS)
    )
    accounts = list(Account.objects.filter(domain=domain).order_by("pk"))
    servers = SmtpServer.objects.bulk_create(
        server(ports[n % PARTNER_SINKS]) for n in range(SENDERS // 2)
    )
    SendAsAlias.objects.bulk_create(
        SendAsAlias(
            account=accounts[n],
            address=f"user{n}@partner{n % PARTNER_SINKS}.example",
            state=SendAsAlias.State.VERIFIED,
            smtp_server=servers[n],
        )
        for n in range(SENDERS // 2)
    )
    now = timezone.now()
    batch = []
    for n in range(messages):
        account = accounts[n % SENDERS]
        sender = (
            f"user{n % SENDERS}@partner{(n % SENDERS) % PARTNER_SINKS}.example"
            if n % SENDERS < SENDERS // 2
            else account.email
        )
        message_id = f"<bench{n}@bench.example>"
        raw = (
            f"From: {sender}\r\nTo: rcpt{n}@elsewhere.example\r\nSubject: bench {n}\r\n"
            f"Message-ID: {message_id}\r\n\r\nHello {n}\r\n"
        ).encode()
        batch.append(
            Message(
                account=account,
                domain_id=account.domain_id,
                from_address=sender,
                recipients=[f"rcpt{n}@elsewhere.example"],
                pending_recipients=[f"rcpt{n}@elsewhere.example"],
                subject=f"bench {n}",
                message_id=message_id,
                raw=raw,
                created_at=now,
                next_attempt_at=now,
            )
        )
    Message.objects.bulk_create(batch, batch_size=1000)
    # Statistics and a vacuumed table before the clock starts, not an autovacuum in the middle.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return list(Message.objects.order_by("pk").values_list("pk", flat=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker")
    parser.add_argument("--batch", type=int, default=200, help="messages per task")
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()

    env = isolated_env("drain")
    var = Path(env["SENDGATE_VAR_DIR"])
    sink, ports = start_sink(var, PARTNER_SINKS + 1)
    env["SENDGATE_EXTRA_CA_FILE"] = str(var / "ca.pem")
    setup_django(env)

    ids = seed(args.messages, ports)
    print(f"seeded {len(ids)} messages from {SENDERS} senders", flush=True)

    from django.db import connection

    from outbound.tasks import deliver_messages
    from outbox.models import Message

    workers = start_workers(env, args.workers, args.concurrency, var / "worker")
    time.sleep(3)  # let the workers connect before the clock starts
    connection.close()
    started = time.time()
    for at in range(0, len(ids), args.batch):
        deliver_messages.delay(ids[at : at + args.batch])
    while True:
        time.sleep(0.25)
        left = Message.objects.exclude(state=Message.State.SENT).count()
        if left == 0 or time.time() - started > 600:
            break
    finished = time.time()

    peaks = {pid: peak_rss_mib(pid) for w in workers for pid in process_tree(w.pid)}
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    sink.send_signal(signal.SIGTERM)
    sink.wait(30)
    accepted = json.loads((var / "accepted.json").read_text())["accepted"]
    created = {m: c.timestamp() for m, c in Message.objects.values_list("message_id", "created_at")}
    latencies = [t - created[mid] for t, mid, _port in accepted if mid in created]
    last = max((t for t, _m, _p in accepted), default=finished)
    unique = len({mid for _t, mid, _p in accepted})
    lines = [
        f"database={connection.vendor} broker={env.get('CELERY_BROKER_URL', 'filesystem://')}",
        f"workers={args.workers}x{args.concurrency} batch={args.batch}",
        f"messages={len(ids)} accepted_by_sinks={len(accepted)} unique={unique} left={left}",
        f"drain_messages_per_second={len(ids) / (last - started):.0f}",
        f"queued_to_accepted_p50_seconds={percentile(latencies, 0.5):.2f}",
        f"queued_to_accepted_p99_seconds={percentile(latencies, 0.99):.2f}",
        f"peak_worker_rss_mib={max(peaks.values()):.0f} (per process; "
        f"{len(peaks)} processes, {sum(peaks.values()):.0f} MiB together)",
    ]
    print("\n".join(lines))
    for worker in workers:
        worker.wait(30)
    if not args.no_record:
        command = " ".join(
            [
                f"DATABASE_URL={shlex.quote(p)}"
                for p in [env["DATABASE_URL"]]
                if p.startswith("postgres")
            ]
            + [f"CELERY_BROKER_URL={env['CELERY_BROKER_URL']}"] * ("CELERY_BROKER_URL" in env)
            + [".venv/bin/python", "bench/drain.py", *sys.argv[1:]]
        )
        record("Outbox drain (bench/drain.py)", command, lines)


if __name__ == "__main__":
    main()
