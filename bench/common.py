"""Shared helpers for the benchmarks: an isolated environment, processes, memory, the report."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on ``port`` on loopback."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def isolated_env(name: str, recreate: bool = True) -> dict[str, str]:
    """Environment for the bench and its workers: own var/ dir, own queue, own database.

    ``recreate=False`` keeps a PostgreSQL database an earlier run seeded. A PostgreSQL database
    whose name already contains "bench" is used as given (several people benchmarking on one
    server each pass their own); any other is replaced by ``sendgate_bench_<name>``.
    """
    var = tempfile.mkdtemp(prefix=f"sendgate-bench-{name}-")
    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", "bench-only-" + name)
    env.setdefault("SENDGATE_SECRETS_KEYS", "bench:" + _fernet_key())
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",  # DEBUG would record every query in memory
        SENDGATE_VAR_DIR=var,
        SENDGATE_CELERY_QUEUE=f"sendgate-bench-{name}-{os.getpid()}",
        SENDGATE_SMTP_ALLOWED_NETWORKS="127.0.0.0/8",
        SENDGATE_SMTP_ALLOWED_PORTS="1024-65535",
    )
    url = env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        base, _, given = url.rpartition("/")
        if "bench" not in given:
            env["DATABASE_URL"] = f"{base}/sendgate_bench_{name}"
        if recreate:
            _recreate_postgres_database(env["DATABASE_URL"])
    else:
        env["DATABASE_URL"] = f"sqlite:///{var}/bench.sqlite3"
    return env


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _recreate_postgres_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    django.setup()


def start_sink(var: Path, count: int) -> tuple[subprocess.Popen, list[int]]:
    """bench/sink.py on ``count`` free ports, with a certificate for localhost signed by the CA
    it writes to ``var``/ca.pem; returns once it is ready. It writes what it accepted to
    ``var``/accepted.json when stopped."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(var / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(var / "sink.pem"))
    ports = [free_port() for _ in range(count)]
    sink = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "sink.py"),
            "--ports",
            ",".join(map(str, ports)),
            "--cert",
            str(var / "sink.pem"),
            "--out",
            str(var / "accepted.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None
    if sink.stdout.readline().strip() != "ready":
        raise SystemExit("the sink did not start")
    return sink, ports


def start_workers(env: dict[str, str], count: int, concurrency: int, log: Path) -> list:
    workers = []
    for n in range(count):
        out = open(log.with_suffix(f".{n}.log"), "w")  # noqa: SIM115 - lives as long as the worker
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    str(concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"bench{n}@%h",
                    "-Q",
                    env["SENDGATE_CELERY_QUEUE"],
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    return workers


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (prefork pool children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of one process, in MiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def record(title: str, command: str, lines: list[str]) -> None:
    """Append a dated section with the command and its figures to docs/benchmarks.md."""
    BENCHMARKS_MD.parent.mkdir(exist_ok=True)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nFigures printed by the scripts in `bench/`, newest last. Each "
            "section names the command that produced it. Machine: 2 cores, 24 GiB.\n"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(lines)
    with BENCHMARKS_MD.open("a") as fh:
        fh.write(f"\n## {title} — {stamp}\n\n```\n$ {command}\n{body}\n```\n")
