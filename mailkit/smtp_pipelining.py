"""RFC 2920 PIPELINING: MAIL FROM, every RCPT TO and DATA in one write, then their replies in order.

aiosmtplib sends one command and waits for its reply; to a server that offers PIPELINING this saves
a round trip per recipient and one more for DATA. This uses aiosmtplib's protocol the way its own
commands do (checked against aiosmtplib 5.1), with two differences its one-reply-at-a-time reader
does not need:
- several replies can come in one packet; the protocol parses only the first, so the others are
  taken from its buffer here;
- the protocol drops what arrives while a parsed reply waits to be picked up, so each reply's
  waiter is awaited directly (one hop, before the loop reads the socket again), not through
  ``asyncio.wait_for``, which on Python 3.11 leaves a gap between the two.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, SMTPProtocol


def envelope_commands(mail_from: str, recipients: list[str]) -> list[bytes]:
    """MAIL FROM, one RCPT TO per recipient and DATA, as aiosmtplib would write them."""
    commands = [b"MAIL FROM:" + quote_address(mail_from).encode("ascii")]
    commands += [b"RCPT TO:" + quote_address(rcpt).encode("ascii") for rcpt in recipients]
    commands.append(b"DATA")
    for command in commands:
        if COMMAND_INJECTION_REGEX.search(command):
            raise ValueError("Command arg contains a prohibited control character")
    return commands


async def send_pipelined(
    client: aiosmtplib.SMTP, commands: list[bytes], timeout: float | None
) -> list[aiosmtplib.SMTPResponse]:
    """Write ``commands`` at once and return one reply per command, in order."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:  # noqa: SLF001 - set on connect
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:  # noqa: SLF001
            protocol._response_pending = True  # noqa: SLF001 - replies are due from now on
            protocol.write(b"".join(command + b"\r\n" for command in commands))
            try:
                return [await _next_reply(protocol, timeout) for _command in commands]
            finally:
                protocol._response_pending = False  # noqa: SLF001
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # replies may still be on their way: the session cannot go on
        raise


async def _next_reply(protocol: SMTPProtocol, timeout: float | None) -> aiosmtplib.SMTPResponse:
    buffered = protocol._read_response_from_buffer()  # noqa: SLF001 - came with the one before
    if buffered is not None:
        return buffered
    waiter = protocol._response_waiter  # noqa: SLF001
    if waiter is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with asyncio.timeout(timeout):
            return await waiter
    except TimeoutError as exc:
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
    finally:
        # A fresh waiter for the next reply, as the protocol's own read_response() makes one.
        if protocol.transport is None:
            protocol._response_waiter = None  # noqa: SLF001
        else:
            protocol._response_waiter = asyncio.get_running_loop().create_future()  # noqa: SLF001
