"""Route-specific header edits that keep the accepted message's bytes otherwise untouched."""

from __future__ import annotations

import re

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_SENDER_LINE = re.compile(rb"^sender:", re.IGNORECASE)


def with_sender(raw: bytes, sender: str | None) -> bytes:
    """Drop any Sender: header and add ``Sender: <sender>`` when one is given.

    Works on the bytes so a signed body stays as the client sent it.
    """
    match = _HEADER_END.search(raw)
    # Split after the last header line's own line break: ``rest`` starts with the blank line.
    split = raw.index(b"\n", match.start()) + 1 if match else len(raw)
    head, rest = raw[:split], raw[split:]
    kept: list[bytes] = []
    skipping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue  # a folded continuation of the dropped header
        skipping = bool(_SENDER_LINE.match(line))
        if not skipping:
            kept.append(line)
    prefix = f"Sender: {sender}\r\n".encode() if sender else b""
    return prefix + b"".join(kept) + rest
