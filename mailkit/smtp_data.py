"""DATA from a file, in chunks: a worker's memory stays flat however big the message is.

aiosmtplib's ``data()`` takes the whole message as one bytes object and copies it twice on the
way (line endings, dot-stuffing) before the TLS layer buffers all of it: about five copies of a
25 MB message at once. Here the message is read, normalised and written a chunk at a time,
waiting for the socket to drain in between.
"""

from __future__ import annotations

import re
from typing import IO

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

CHUNK = 256 * 1024

_LINE_END = re.compile(rb"\r\n|\n|\r")
_DOT_AFTER_LINE_END = re.compile(rb"\n\.")


class DotStuffer:
    """CRLF line endings and a doubled leading '.' on every line (RFC 5321 4.5.2), correct
    across chunk boundaries; ``finish()`` adds the final CRLF if needed and the lone dot."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.held_cr = b""  # a chunk ending in CR: it may be the first half of CRLF

    def feed(self, chunk: bytes) -> bytes:
        text = self.held_cr + chunk
        self.held_cr = b""
        if text.endswith(b"\r"):
            text, self.held_cr = text[:-1], b"\r"
        text = _DOT_AFTER_LINE_END.sub(b"\n..", _LINE_END.sub(b"\r\n", text))
        if self.at_line_start and text.startswith(b"."):
            text = b"." + text
        if text:
            self.at_line_start = text.endswith(b"\n")
        return text

    def finish(self) -> bytes:
        tail = b"\r\n" if self.held_cr else b""
        if not tail and not self.at_line_start:
            tail = b"\r\n"
        return tail + b".\r\n"


async def send_data(
    client: aiosmtplib.SMTP, body: IO[bytes], timeout: float | None
) -> aiosmtplib.SMTPResponse:
    """Send DATA with the message read from ``body`` (from its start).

    Uses aiosmtplib's command lock and reply reading the way its own ``data()`` does (checked
    against aiosmtplib 5.1); only the message is written in chunks.
    """
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:  # noqa: SLF001 - set on connect
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:  # noqa: SLF001
            protocol._response_pending = True  # noqa: SLF001
            protocol.write(b"DATA\r\n")
            start = await protocol.read_response(timeout=timeout)
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            return await _send_message(protocol, body, timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise


async def send_body(
    client: aiosmtplib.SMTP, body: IO[bytes], timeout: float | None
) -> aiosmtplib.SMTPResponse:
    """Send the message from ``body`` after the server answered DATA with 354 (pipelining)."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:  # noqa: SLF001 - set on connect
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:  # noqa: SLF001
            return await _send_message(protocol, body, timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise


async def _send_message(
    protocol: SMTPProtocol, body: IO[bytes], timeout: float | None
) -> aiosmtplib.SMTPResponse:
    body.seek(0)
    stuffer = DotStuffer()
    while chunk := body.read(CHUNK):
        protocol.write(stuffer.feed(chunk))
        await protocol._drain_helper()  # noqa: SLF001 - wait for the socket: flat memory
    protocol._response_pending = True  # noqa: SLF001
    protocol.write(stuffer.finish())
    response = await protocol.read_response(timeout=timeout)
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response
