"""Memory with big messages: 6 concurrent senders submit N messages of S MiB, then one worker
delivers them all in one batch through a per-user gateway.

    .venv/bin/python bench/big_messages.py --messages 20 --size-mb 20

Phase 1 starts the submission listener alone (one process) and 6 client threads that submit
the messages over STARTTLS with an app password, 6 sessions at a time; meanwhile another
account submits one small message (small_submit_seconds_under_load). Phase 2 starts one Celery
worker (``--pool solo``: the one process that delivers), which takes all the queued messages
as one batch (the wake-ups find them due together) and sends them to a STARTTLS + AUTH sink.
Prints listener_peak_rss_mib= and worker_peak_rss_mib= (VmHWM from /proc), the listener's
baseline before any message, and the times. Without DATABASE_URL it runs on a fresh SQLite
file and the filesystem broker; with PostgreSQL the database's name must contain "bench".
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, peak_rss_mib  # noqa: E402
from bench.throughput import (  # noqa: E402
    APP_PASSWORD,
    Sinks,
    prepare_environment,
    reset_database,
    seed,
)

SENDERS = 6


def big_message(seq: int, sender: str, size: int) -> bytes:
    head = (
        f"From: {sender}\r\nTo: rcpt{seq}@example.net\r\nSubject: big {seq}\r\n"
        f"X-Bench-Seq: {seq}\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    line = (b"QUJDRE" * 13)[:76] + b"\r\n"  # base64-looking lines, as an attachment would be
    return head + line * (size // len(line))


def submit(port: int, login: str, sender: str, seq: int, size: int) -> float:
    context = ssl.create_default_context(cafile=os.environ["SENDGATE_EXTRA_CA_FILE"])
    data = big_message(seq, sender, size)
    started = time.monotonic()
    with smtplib.SMTP("localhost", port, timeout=300) as client:
        client.starttls(context=context)
        client.login(login, APP_PASSWORD)
        client.sendmail(sender, [f"rcpt{seq}@example.net"], data)
    return time.monotonic() - started


def current_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
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
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            env["SENDGATE_CELERY_QUEUE"],
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=20)
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)

    var_dir = Path(tempfile.mkdtemp(prefix="sendgate-bench-big-"))
    env = prepare_environment(var_dir)
    env["SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES"] = str(size + 1024 * 1024)
    os.environ.update(env)
    import django

    django.setup()
    reset_database()
    gateway_port, alias_ports = free_port(), [free_port()]
    senders = seed(gateway_port, alias_ports)
    from django.db import connections

    connections.close_all()

    sinks = Sinks(var_dir / "localhost.pem", [gateway_port, *alias_ports])
    port = free_port()
    listener = subprocess.Popen(
        [sys.executable, "manage.py", "submission", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    worker = None
    try:
        time.sleep(4)  # the listener is bound
        listener_idle = current_rss_mib(listener.pid)
        # Accounts with an alias on a per-user gateway (even numbers), one per sender thread.
        chosen = [senders[2 * i] for i in range(SENDERS)]
        started = time.monotonic()
        with ThreadPoolExecutor(SENDERS + 1) as pool:
            futures = [
                pool.submit(submit, port, *chosen[seq % SENDERS], seq, size)
                for seq in range(args.messages)
            ]
            # Meanwhile another account sends a small message: how long does it wait?
            time.sleep(2)
            small = pool.submit(submit, port, *senders[2 * SENDERS], args.messages, 10_000)
            durations = [f.result() for f in futures]
            small_seconds = small.result()
        submitted = time.monotonic() - started
        print(f"messages={args.messages} size_mib={args.size_mb:g} senders={SENDERS}")
        print(f"listener_idle_rss_mib={listener_idle:.0f}")
        print(f"listener_peak_rss_mib={peak_rss_mib(listener.pid):.0f}")
        print(f"submit_seconds_total={submitted:.1f}")
        print(f"submit_seconds_slowest={max(durations):.1f}")
        print(f"small_submit_seconds_under_load={small_seconds:.2f}")

        worker = start_worker(env, var_dir / "worker.log")
        started = time.monotonic()
        if not sinks.wait_for(args.messages + 1, timeout=900):
            sys.exit(f"only {len(sinks.accepted)} of {args.messages} messages were delivered")
        delivered = time.monotonic() - started
        print(f"delivered={len(sinks.accepted)} deliver_seconds={delivered:.1f}")
        print(f"worker_peak_rss_mib={peak_rss_mib(worker.pid):.0f}")
    finally:
        for process in [listener, worker, sinks.process]:
            if process is not None:
                process.terminate()
        for process in [listener, worker, sinks.process]:
            if process is not None:
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
