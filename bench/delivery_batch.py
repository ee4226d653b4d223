"""A delivery batch's CPU cost per message, by batch size, in this process. Prints figures only.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sendgate_bench_me \\
        .venv/bin/python bench/delivery_batch.py --sizes 1,5,20,200

Seeds what bench/drain.py seeds (half the mail through per-user gateways, half through the
domain gateway, all to loopback sinks requiring STARTTLS + AUTH), due in a random order so
that every batch mixes both, then runs what a
``deliver_due`` task runs, ``claim_due`` + ``deliver_claimed``, batch after batch, and reports
the process's CPU time (every thread: the SMTP event loop has its own) per message and the SQL
statements per batch. CPU rather than wall-clock time: the machine may be shared. The kept SMTP
sessions are opened by a warm-up batch first, as a busy worker would have them.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import isolated_env, setup_django, start_sink  # noqa: E402
from bench.drain import PARTNER_SINKS, seed  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20,200", help="batch sizes, comma-separated")
    parser.add_argument(
        "--messages", type=int, default=600, help="messages delivered per batch size"
    )
    return parser.parse_args()


def run_batches(size: int, messages: int) -> tuple[float, float, int]:
    """Deliver ``messages`` in batches of ``size``: CPU ms per message, statements per batch,
    and how many were delivered."""
    from django.db import connection

    from outbound import delivery

    batches = max(1, messages // size)
    _counter.count = delivered = 0
    started = time.process_time()
    for _ in range(batches):
        with connection.execute_wrapper(_counter):
            taken = delivery.claim_due(size)
            delivery.deliver_claimed(taken)
        delivered += len(taken.ids)
    spent = time.process_time() - started
    return spent * 1000 / max(delivered, 1), _counter.count / batches, delivered


class _Counter:
    """Counts the SQL statements (an executemany is one round of statements, counted once)."""

    count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


_counter = _Counter()


def shuffle_due_times(ids: list[int]) -> None:
    """Make the messages due in a fixed random order: every batch mixes the per-user gateways'
    mail with the domain gateway's (seed() queues them in blocks of 500)."""
    from datetime import timedelta

    from django.utils import timezone

    from outbox.models import Message

    order = list(ids)
    random.Random(13).shuffle(order)
    start = timezone.now() - timedelta(hours=1)
    messages = [
        Message(pk=pk, next_attempt_at=start + timedelta(milliseconds=n))
        for n, pk in enumerate(order)
    ]
    Message.objects.bulk_update(messages, ["next_attempt_at"], batch_size=500)


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = isolated_env("delivery_batch")
    var = Path(env["SENDGATE_VAR_DIR"])
    env["SENDGATE_EXTRA_CA_FILE"] = str(var / "ca.pem")
    sink, ports = start_sink(var, PARTNER_SINKS + 1)
    try:
        setup_django(env)
        from django.db import connection

        from outbound import delivery
        from outbox.models import Message

        warm_up = 10 * (PARTNER_SINKS + 1)  # enough to open a session to most sinks
        shuffle_due_times(seed(warm_up + args.messages * len(sizes), ports))
        delivery.deliver_claimed(delivery.claim_due(warm_up))
        print(f"database={connection.vendor} messages_per_size={args.messages}")
        for size in sizes:
            per_message, per_batch, delivered = run_batches(size, args.messages)
            print(
                f"batch={size:<4} cpu_ms_per_message={per_message:6.2f} "
                f"statements_per_batch={per_batch:5.1f} delivered={delivered}",
                flush=True,
            )
        unsent = Message.objects.exclude(state=Message.State.SENT).count()
        print(f"not_sent={unsent}")
    finally:
        from mailkit.smtp_pool import worker_loop

        worker_loop.close()
        sink.terminate()
        sink.wait(30)


if __name__ == "__main__":
    main()
