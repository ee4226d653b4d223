"""Header edits on the accepted message's bytes, leaving everything else as the client sent it."""

from __future__ import annotations

import re

HEADER_END = re.compile(rb"\r?\n\r?\n")


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """Return (header lines, rest); ``rest`` starts with the blank line that ends the header."""
    match = HEADER_END.search(raw)
    # Split after the last header line's own line break.
    split = raw.index(b"\n", match.start()) + 1 if match else len(raw)
    return raw[:split], raw[split:]


def without_headers(raw: bytes, names: set[str]) -> bytes:
    """Drop every header field called one of ``names`` (lower case), with its folded lines."""
    head, rest = split_header(raw)
    kept: list[bytes] = []
    skipping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue  # a folded continuation of a dropped header
        name = line.split(b":", 1)[0].strip().lower()
        skipping = b":" in line and name.decode("ascii", "replace") in names
        if not skipping:
            kept.append(line)
    return b"".join(kept) + rest


def with_headers(raw: bytes, lines: list[str]) -> bytes:
    """Put ``Name: value`` lines on top; the values must already be free of CR, LF and NUL."""
    return "".join(f"{line}\r\n" for line in lines).encode() + raw


def with_sender(raw: bytes, sender: str | None) -> bytes:
    """Drop any Sender: header and add ``Sender: <sender>`` when one is given.

    Works on the bytes so a signed body stays as the client sent it.
    """
    raw = without_headers(raw, {"sender"})
    return with_headers(raw, [f"Sender: {sender}"]) if sender else raw
