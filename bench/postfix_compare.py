"""Side by side: the same workload through a private Postfix and through Sendgate, in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sendgate_bench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
      .venv/bin/python bench/postfix_compare.py --messages 10000

The workload is bench/throughput.py's: 1,000 accounts, half sending as an alias relayed through
one of 10 per-sender relays, half as their primary address through the default relay; every
relay is a loopback sink (bench/submission_sink.py) that requires STARTTLS + AUTH; clients are
--sessions parallel smtplib sessions of --per-session messages over STARTTLS + AUTH, after
--unloaded messages sent one at a time. Postfix (Debian package, bench/postfix_stack.py) runs
from a temporary directory with Dovecot for SASL; the Sendgate leg is bench/throughput.py itself,
run as a child with the same options. Both rates are first submit of the load to the last
message accepted by a sink; every message must arrive or the run fails.

Prints postfix_messages_per_second, sendgate_messages_per_second, ratio_vs_postfix (Sendgate
over Postfix) and the load average; --record appends them to docs/benchmarks.md. Absolute
figures on a shared machine vary; the ratio from one run is the comparison. --rounds N
alternates the legs N times and adds the medians.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import postfix_stack  # noqa: E402
from bench.common import ROOT, free_port, record  # noqa: E402
from bench.throughput import (  # noqa: E402
    ALIAS_SINKS,
    APP_PASSWORD,
    Sinks,
    sender_plan,
    session_plan,
    submit_sessions,
    submit_unloaded,
)

Say = Callable[[str], None]  # prints a line of the report and keeps it for --record


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def postfix_leg(args: argparse.Namespace, say: Say) -> float:
    """Run the workload through Postfix; return its end-to-end messages per second."""
    reason = postfix_stack.available()
    if reason:
        sys.exit(reason)
    work = Path(tempfile.mkdtemp(prefix="sendgate-bench-postfix-"))
    work.chmod(0o755)  # Postfix's and Dovecot's own users must reach the stack inside
    ca_pem, chain_pem = issue_certificates(work)
    gateway_port, alias_ports = free_port(), [free_port() for _ in range(ALIAS_SINKS)]
    plan = sender_plan(ALIAS_SINKS)
    sinks = Sinks(chain_pem, [gateway_port, *alias_ports])
    stack = None

    def clean_up() -> None:
        if stack:
            stack.stop()
        if sinks.process.poll() is None:
            sinks.process.terminate()
            sinks.process.wait(timeout=30)

    atexit.register(clean_up)  # also when the run is interrupted between the steps below
    try:
        stack = postfix_stack.start(
            work / "stack",
            port=free_port(),
            plan=plan,
            password=APP_PASSWORD,
            gateway_port=gateway_port,
            alias_ports=alias_ports,
            ca_pem=ca_pem,
            chain_pem=chain_pem,
            tls_connection_reuse=args.postfix_tls_reuse,
        )
        senders = [(login, sender) for login, sender, _sink in plan]
        return drive_postfix(args, stack.port, senders, sinks, str(ca_pem), say)
    except RuntimeError as exc:  # Postfix or Dovecot did not start; the logs are in the message
        sys.exit(f"Postfix leg: {exc}")
    except TimeoutError as exc:
        sys.exit(f"Postfix leg: {exc}\n{stack.log_tail() if stack else ''}")
    finally:
        clean_up()
        atexit.unregister(clean_up)
        shutil.rmtree(work, ignore_errors=True)


def issue_certificates(work: Path) -> tuple[Path, Path]:
    """A throw-away CA and a certificate for localhost; return the CA's PEM and key + chain."""
    import trustme

    ca = trustme.CA()
    ca_pem, chain_pem = work / "ca.pem", work / "localhost.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(chain_pem)
    )
    return ca_pem, chain_pem


def drive_postfix(
    args: argparse.Namespace,
    port: int,
    senders: list[tuple[str, str]],
    sinks: Sinks,
    ca_file: str,
    say: Say,
) -> float:
    """Submit the workload as bench/throughput.py does; return the end-to-end rate.

    Raise TimeoutError if not every message reached the sinks within --timeout.
    """
    submitted: dict[int, float] = {}
    accepted_250: dict[int, float] = {}
    submit_unloaded(port, senders[0], args.unloaded, sinks, submitted, accepted_250, ca_file)
    first = args.unloaded
    batches = session_plan(senders, args.messages, args.per_session, first)
    started = submit_sessions(port, batches, args.sessions, submitted, accepted_250, ca_file)
    intake_done = time.time()
    total = args.unloaded + args.messages
    if not sinks.wait_for(total, timeout=args.timeout):
        raise TimeoutError(
            f"{len(sinks.accepted)} of {total} messages reached the sinks "
            f"within {args.timeout:.0f} s"
        )
    seqs = [s for s in range(first, first + args.messages) if s in sinks.accepted]
    rate = len(seqs) / (max(sinks.accepted[s] for s in seqs) - started)
    say(f"postfix_intake_messages_per_second={args.messages / (intake_done - started):.0f}")
    say(f"postfix_messages={args.messages} delivered={len(seqs)}")
    say(f"postfix_messages_per_second={rate:.0f}")
    return rate


def sendgate_leg(args: argparse.Namespace, say: Say) -> float:
    """Run bench/throughput.py with the same workload; return its end-to-end rate."""
    command = [
        sys.executable,
        str(ROOT / "bench" / "throughput.py"),
        f"--messages={args.messages}",
        f"--sessions={args.sessions}",
        f"--per-session={args.per_session}",
        f"--unloaded={args.unloaded}",
    ]
    figures: dict[str, str] = {}
    # Its own process group, so that an interrupted run can stop it and everything it started
    # (listeners, workers, sinks) at once: throughput.py itself only cleans up after the load.
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as child:
        assert child.stdout
        try:
            for line in child.stdout:
                line = line.rstrip("\n")
                say(f"sendgate: {line}")
                for word in line.split():
                    key, _, value = word.partition("=")
                    figures[key] = value
        except BaseException:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=60)
            raise
    if child.returncode != 0:
        sys.exit(f"Sendgate leg: bench/throughput.py exited with {child.returncode}")
    if figures.get("delivered") != str(args.messages) or figures.get("complete") != "True":
        sys.exit(
            f"Sendgate leg: {figures.get('delivered', 'no')} of {args.messages} messages "
            "reached the sinks"
        )
    rate = float(figures["end_to_end_messages_per_second"])
    say(f"sendgate_messages_per_second={rate:.0f}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--sessions", type=int, default=8, help="parallel client sessions")
    parser.add_argument("--per-session", type=int, default=100)
    parser.add_argument("--unloaded", type=int, default=50, help="sent one at a time first")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the last delivery")
    parser.add_argument(
        "--postfix-tls-reuse",
        action="store_true",
        help="smtp_tls_connection_reuse = yes (Postfix does not reuse TLS connections by default)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternate the legs this often")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--skip-sendgate", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    # A plain `kill` runs the finally blocks too: no Postfix or sink is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"load_average_before={load_average()}")
    postfix: list[float] = []
    sendgate: list[float] = []
    for number in range(1, args.rounds + 1):
        prefix = f"round {number}: " if args.rounds > 1 else ""

        def say_in_round(line: str, prefix: str = prefix) -> None:
            say(prefix + line)

        if not args.skip_postfix:
            postfix.append(postfix_leg(args, say_in_round))
            say_in_round(f"load_average_after_postfix={load_average()}")
        if not args.skip_sendgate:
            sendgate.append(sendgate_leg(args, say_in_round))
            say_in_round(f"load_average_after_sendgate={load_average()}")
        if postfix and sendgate:
            say_in_round(f"ratio_vs_postfix={sendgate[-1] / postfix[-1]:.2f}")
    if args.rounds > 1:
        # Legs alternate, so a change in the machine's load hits both: the median of the
        # rounds' ratios is steadier than the ratio of the medians.
        if postfix:
            say(f"postfix_messages_per_second={statistics.median(postfix):.0f}")
        if sendgate:
            say(f"sendgate_messages_per_second={statistics.median(sendgate):.0f}")
        if postfix and sendgate:
            ratios = [s / p for p, s in zip(postfix, sendgate, strict=True)]
            say(
                f"ratio_vs_postfix={statistics.median(ratios):.2f} (median of {args.rounds} rounds)"
            )
    if args.record:
        env = [
            f"{name}={os.environ[name]}"
            for name in ("DATABASE_URL", "CELERY_BROKER_URL")
            if name in os.environ
        ]
        command = " ".join([*env, ".venv/bin/python bench/postfix_compare.py", *sys.argv[1:]])
        record("Side by side with Postfix (bench/postfix_compare.py)", command, lines)


if __name__ == "__main__":
    main()
