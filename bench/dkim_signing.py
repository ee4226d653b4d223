"""How much CPU DKIM signing costs per message: RSA 2048 and Ed25519, through mailkit.domainkeys
(dkimpy), on a message of a typical size. Prints messages/s and appends them to
docs/benchmarks.md.

    .venv/bin/python bench/dkim_signing.py [--messages 500] [--body-kib 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record  # noqa: E402
from mailkit import domainkeys  # noqa: E402


def sample_message(body_kib: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * (body_kib * 1024 // len(line) + 1)
    return (
        b"From: Ann Example <ann@example.com>\r\nTo: bob@elsewhere.test\r\n"
        b"Subject: Benchmark\r\nDate: Mon, 30 Nov 2026 05:00:00 +0000\r\n"
        b"Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n\r\n' + body
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--body-kib", type=int, default=4)
    args = parser.parse_args()
    message = sample_message(args.body_kib)
    lines = [f"messages per algorithm: {args.messages}, message size: {len(message)} bytes"]
    for algorithm in domainkeys.Algorithm:
        pair = domainkeys.generate(algorithm)
        start = time.perf_counter()
        for _ in range(args.messages):
            domainkeys.sign(
                message,
                domain="example.com",
                selector="bench",
                algorithm=algorithm,
                private_key=pair.private_key,
            )
        seconds = time.perf_counter() - start
        lines.append(
            f"{algorithm.value:8} {args.messages / seconds:8.0f} messages/s "
            f"({seconds / args.messages * 1000:.2f} ms per message, one core)"
        )
    print("\n".join(lines))
    record(
        "DKIM signing cost (bench/dkim_signing.py)",
        f".venv/bin/python bench/dkim_signing.py --messages {args.messages} "
        f"--body-kib {args.body_kib}",
        lines,
    )


if __name__ == "__main__":
    main()
