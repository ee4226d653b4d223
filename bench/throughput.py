"""End-to-end throughput: SMTP submission -> outbox -> Celery workers -> loopback sinks.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sendgate_bench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
      .venv/bin/python bench/throughput.py --messages 10000

1,000 accounts; half send as a verified alias whose per-user gateway is one of 10 loopback sinks,
half as their primary address through the domain gateway sink. Every sink requires STARTTLS + AUTH
(bench/submission_sink.py, not aiosmtpd). Clients: 8 parallel smtplib sessions of 100 messages
each, over STARTTLS with an app password. Prints end_to_end_messages_per_second (first submit to
last message accepted by a sink), the intake rate (last 250), p50/p99 latency under load and
unloaded, and the peak memory (VmHWM) of each process. The database is wiped: its name must
contain "bench".
Without DATABASE_URL it runs on a fresh SQLite file and the filesystem broker.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    free_port,
    peak_rss_mib,
    percentile,
    process_tree,
    start_workers,
)

ACCOUNTS = 1000
ALIAS_SINKS = 10
APP_PASSWORD = "benchbenchbenchb"  # noqa: S105 - a throw-away bench login


def prepare_environment(var_dir: Path) -> dict[str, str]:
    """Settings for this process and every child, through the environment."""
    import trustme
    from cryptography.fernet import Fernet

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(var_dir / "ca.pem"))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(var_dir / "localhost.pem")
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory and slows everything
        "DJANGO_SECRET_KEY": "bench-only",
        "SENDGATE_VAR_DIR": str(var_dir),
        "SENDGATE_SECRETS_KEYS": f"b1:{Fernet.generate_key().decode()}",
        "SENDGATE_CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "SENDGATE_EXTRA_CA_FILE": str(var_dir / "ca.pem"),
        "SENDGATE_SMTP_ALLOWED_NETWORKS": "127.0.0.0/8",
        "SENDGATE_SMTP_ALLOWED_PORTS": "1024-65535",  # the sinks listen on free high ports
        "SENDGATE_SUBMISSION_CERT_FILE": str(var_dir / "localhost.pem"),
        "SENDGATE_SUBMISSION_HOSTNAME": "localhost",
        "SENDGATE_DAILY_MESSAGE_LIMIT": "1000000",
        "SENDGATE_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return dict(os.environ)


def reset_database() -> None:
    from django.conf import settings
    from django.core.management import call_command

    name = str(settings.DATABASES["default"]["NAME"])
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        if "bench" not in name:
            sys.exit(f"refusing to wipe database {name!r}: its name must contain 'bench'")
        _create_postgres_database(name)
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def _create_postgres_database(name: str) -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def sender_plan(alias_sinks: int) -> list[tuple[str, str, int | None]]:
    """(login, From address, index of the alias's sink or None for the domain gateway) per account.

    Even accounts send as a verified alias, odd ones as their primary address.
    """
    plan: list[tuple[str, str, int | None]] = []
    for i in range(ACCOUNTS):
        login = f"user{i}@bench.test"
        if i % 2:
            plan.append((login, login, None))
        else:
            plan.append((login, f"user{i}@partner{i % alias_sinks}.test", i % alias_sinks))
    return plan


def seed(gateway_port: int, alias_ports: list[int]) -> list[tuple[str, str]]:
    """Create the accounts; return (login, From address) per account."""
    from django.db import transaction
    from django.utils import timezone

    from directory.models import Account, Domain, OrgUnit
    from gateways.models import SendAsAlias, SmtpServer
    from outbound.credentials import keyed_hash
    from outbound.models import AppPassword
    from policy.models import OutboundPolicy

    def server(port: int) -> SmtpServer:
        return SmtpServer(
            host="localhost",
            port=port,
            security=SmtpServer.Security.STARTTLS,
            username="bench",
            password="bench",  # noqa: S106
            last_test_ok=True,
        )

    with transaction.atomic():
        domain_gateway = server(gateway_port)
        domain_gateway.save()
        domain = Domain.objects.create(
            name="bench.test", outbound_gateway=domain_gateway, verified_at=timezone.now()
        )
        unit = OrgUnit.objects.create(domain=domain, name="bench.test")
        OutboundPolicy.objects.create(domain=domain, allow_user_gateways=True)
        accounts = Account.objects.bulk_create(
            Account(
                email=f"user{i}@bench.test",
                domain=domain,
                org_unit=unit,
                gateways_allowed=True,
                password="!",  # unusable: no console login  # noqa: S106
            )
            for i in range(ACCOUNTS)
        )
        # One hash for all, as create_app_password stores it (a keyed hash, not PBKDF2).
        digest = keyed_hash(APP_PASSWORD)
        AppPassword.objects.bulk_create(
            AppPassword(account=a, name="bench", password_hash=digest) for a in accounts
        )
        plan = sender_plan(len(alias_ports))
        for account, (_login, sender, sink) in zip(accounts, plan, strict=True):
            if sink is None:
                continue
            gateway = server(alias_ports[sink])
            gateway.save()
            SendAsAlias.objects.create(
                account=account,
                address=sender,
                state=SendAsAlias.State.VERIFIED,
                smtp_server=gateway,
            )
    return [(login, sender) for login, sender, _sink in plan]


class Sinks:
    """The sink process; collects each message's acceptance time from its stdout."""

    def __init__(self, cert: Path, ports: list[int]) -> None:
        self.accepted: dict[int, float] = {}
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "submission_sink.py"), str(cert)]
            + [str(port) for port in ports],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            seq, when = line.split()
            with self.changed:
                self.accepted[int(seq)] = float(when)
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.accepted) < count:
                if not self.changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    return False
        return True


def message(seq: int, sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: rcpt{seq}@example.net\r\nSubject: bench {seq}\r\n"
        f"X-Bench-Seq: {seq}\r\n\r\nSmall message number {seq}.\r\n"
    ).encode()


def client_session(
    port: int,
    login: str,
    sender: str,
    seqs: list[int],
    submitted: dict,
    accepted_250: dict,
    ca_file: str | None = None,
) -> None:
    context = ssl.create_default_context(cafile=ca_file or os.environ["SENDGATE_EXTRA_CA_FILE"])
    with smtplib.SMTP("localhost", port, timeout=120) as client:
        client.starttls(context=context)
        client.login(login, APP_PASSWORD)
        for seq in seqs:
            submitted[seq] = time.time()
            client.sendmail(sender, [f"rcpt{seq}@example.net"], message(seq, sender))
            accepted_250[seq] = time.time()


def submit_unloaded(
    port: int,
    sender: tuple[str, str],
    count: int,
    sinks: Sinks | None,
    submitted: dict,
    accepted_250: dict,
    ca_file: str | None = None,
) -> None:
    """Messages 0..count-1, one session each, each delivered (if ``sinks``) before the next."""
    for seq in range(count):
        client_session(port, *sender, [seq], submitted, accepted_250, ca_file)
        if sinks and not sinks.wait_for(seq + 1, timeout=30):
            sys.exit("unloaded phase: a message did not reach its sink within 30 s")


def session_plan(
    senders: list[tuple[str, str]], messages: int, per_session: int, first: int
) -> list[tuple[str, str, list[int]]]:
    """Sessions of ``per_session`` messages numbered from ``first``; accounts round-robin."""
    batches = []
    for number, start in enumerate(range(0, messages, per_session)):
        login, sender = senders[(number * 7) % len(senders)]
        seqs = list(range(first + start, first + min(start + per_session, messages)))
        batches.append((login, sender, seqs))
    return batches


def submit_sessions(
    port: int,
    batches: list[tuple[str, str, list[int]]],
    sessions: int,
    submitted: dict,
    accepted_250: dict,
    ca_file: str | None = None,
) -> float:
    """Run the sessions, ``sessions`` at a time; return when the first one started."""
    started = time.time()
    with ThreadPoolExecutor(sessions) as pool:
        for future in [
            pool.submit(client_session, port, *batch, submitted, accepted_250, ca_file)
            for batch in batches
        ]:
            future.result()
    return started


def peak_memory_mb(pid: int, children: bool = False) -> float:
    """VmHWM (peak resident set) of a process, plus its descendants' if asked."""
    return sum(peak_rss_mib(p) for p in (process_tree(pid) if children else [pid]))


def wait_for_listener(port: int, listeners: list[subprocess.Popen], timeout: float = 120) -> None:
    """Until the port greets (a loaded machine starts Django slowly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in listeners):
            sys.exit("a listener exited at start")
        try:
            smtplib.SMTP("localhost", port, timeout=10).quit()
            time.sleep(1)  # the other listeners are a moment behind the first
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"no listener on port {port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far: on a shared machine, a steadier figure than time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--sessions", type=int, default=8, help="parallel client sessions")
    parser.add_argument("--per-session", type=int, default=100)
    parser.add_argument("--listeners", type=int, default=2, help="submission processes")
    parser.add_argument(
        "--workers", type=int, default=1, help="Celery worker processes; 0: measure intake only"
    )
    # 2, as docker-compose.yml and the demo run the worker: delivery waits for its peers on an
    # asyncio loop inside each process, so more processes than cores only split the wake-ups
    # into smaller batches (each with a batch's fixed cost).
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children each")
    parser.add_argument("--unloaded", type=int, default=50, help="messages for unloaded latency")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile (all threads) and the SQL statement count of each listener here",
    )
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="sendgate-bench-"))
    env = prepare_environment(var_dir)
    import django

    django.setup()
    reset_database()
    gateway_port, alias_ports = free_port(), [free_port() for _ in range(ALIAS_SINKS)]
    senders = seed(gateway_port, alias_ports)
    from django.db import connections

    connections.close_all()

    sinks = Sinks(var_dir / "localhost.pem", [gateway_port, *alias_ports])
    port = free_port()
    # --listeners is the number of processes: each one process (not one per core).
    command = ["submission", "--reuse-port", "--processes", "1", "--port", str(port)]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    listeners = [
        subprocess.Popen(
            [sys.executable, "bench/profile_process.py", f"{args.profile}/listener{i}", *command]
            if args.profile
            else [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for i in range(args.listeners)
    ]
    workers = start_workers(env, args.workers, args.concurrency, var_dir / "worker")
    try:
        wait_for_listener(port, listeners)
        time.sleep(6 if args.workers else 0)  # workers ready
        submitted: dict[int, float] = {}
        accepted_250: dict[int, float] = {}

        # Unloaded latency: one message at a time, each delivered before the next is submitted.
        delivering = args.workers > 0  # --workers 0 measures the intake alone
        submit_unloaded(
            port, senders[0], args.unloaded, sinks if delivering else None, submitted, accepted_250
        )
        unloaded_intake = [accepted_250[s] - submitted[s] for s in range(args.unloaded)]

        first = args.unloaded
        # The listeners' CPU under load only: not their start-up (importing Django) or the
        # unloaded phase.
        cpu_before = sum(cpu_seconds(process.pid) for process in listeners)
        batches = session_plan(senders, args.messages, args.per_session, first)
        started = submit_sessions(port, batches, args.sessions, submitted, accepted_250)
        intake_done = time.time()
        listener_cpu = sum(cpu_seconds(process.pid) for process in listeners) - cpu_before
        intake = [accepted_250[s] - submitted[s] for s in range(first, first + args.messages)]
        print(f"intake_messages_per_second={args.messages / (intake_done - started):.0f}")
        print(f"submit_to_250_p50_ms={statistics.median(intake) * 1000:.1f}")
        print(f"submit_to_250_p99_ms={percentile(intake, 0.99) * 1000:.1f}")
        if delivering:
            complete = sinks.wait_for(args.unloaded + args.messages, timeout=600)
            seqs = [s for s in range(first, first + args.messages) if s in sinks.accepted]
            finished = max(sinks.accepted[s] for s in seqs)
            latencies = [sinks.accepted[s] - submitted[s] for s in seqs]
            unloaded = [sinks.accepted[s] - submitted[s] for s in range(args.unloaded)]
            print(f"messages={args.messages} delivered={len(seqs)} complete={complete}")
            print(f"end_to_end_messages_per_second={len(seqs) / (finished - started):.0f}")
            print(f"latency_p50_ms={statistics.median(latencies) * 1000:.0f}")
            print(f"latency_p99_ms={percentile(latencies, 0.99) * 1000:.0f}")
            print(f"unloaded_latency_p50_ms={statistics.median(unloaded) * 1000:.1f}")
        print(f"unloaded_submit_to_250_p50_ms={statistics.median(unloaded_intake) * 1000:.1f}")
        per_message = listener_cpu / args.messages
        print(f"listener_cpu_ms_per_message={per_message * 1000:.2f}")
        for i, process in enumerate(listeners):
            print(f"peak_memory_mb[submission {i}]={peak_memory_mb(process.pid):.0f}")
        for i, process in enumerate(workers):
            label = f"worker {i} + {args.concurrency} children"
            print(f"peak_memory_mb[{label}]={peak_memory_mb(process.pid, children=True):.0f}")
        print(f"peak_memory_mb[sinks]={peak_memory_mb(sinks.process.pid):.0f}")
        print(f"peak_memory_mb[bench clients]={peak_memory_mb(os.getpid()):.0f}")
    finally:
        for process in [*listeners, *workers, sinks.process]:
            process.terminate()
        for process in [*listeners, *workers, sinks.process]:
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
