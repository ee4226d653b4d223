"""A scripted SMTP server for fault tests: it misbehaves exactly as told, on a real socket."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class Script:
    greeting: str | None = "220 fault.test ESMTP"  # None: accept the connection, never greet
    drip_seconds: float | None = None  # send the greeting one byte per interval
    starttls: ssl.SSLContext | None = None  # offer STARTTLS with this server context
    auth_reply: str | None = None  # offer AUTH and answer it with this reply
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply (default 250)
    data_reply: str = "250 2.0.0 queued"
    drop_mid_data: bool = False  # close the connection halfway through the message
    drop_after_dot: bool = False  # read the whole message, close before replying
    drop_after_reply: bool = False  # reply to the message, then close without waiting
    data_delay: float = 0.0  # seconds to think before answering the message
    pipelining: bool = False  # offer PIPELINING (RFC 2920)
    idle_timeout: float | None = None  # say 421 and hang up after this many silent seconds
    # After this many messages on one connection, answer the next MAIL FROM with 421 and hang up
    # (an idle timeout that strikes just as the client comes back).
    hang_up_at_mail_after: int | None = None


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class FaultPeer:
    """Run ``script`` on 127.0.0.1:<port> in a background thread."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.delivered: list[Delivered] = []
        self.commands: list[str] = []
        self.connections = 0
        self.hang_ups = 0  # idle connections this server closed
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(5)
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", 0)
        )
        started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the listener and let every open session finish its cancellation."""
        self._server.close()
        sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    async def _next_line(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The client's next line; b"" once the idle timeout made this server hang up."""
        if self.script.idle_timeout is None:
            return await reader.readline()
        try:
            return await asyncio.wait_for(reader.readline(), self.script.idle_timeout)
        except TimeoutError:
            writer.write(b"421 4.4.2 fault.test closing: idle too long\r\n")
            self.hang_ups += 1
            return b""

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        s = self.script

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            if s.greeting is None:
                await asyncio.sleep(3600)
            if s.drip_seconds is not None:
                for byte in (s.greeting + "\r\n").encode():
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(s.drip_seconds)
            else:
                await say(s.greeting)
            if not s.greeting.startswith("2"):
                return
            mail_from, rcpts = "", []
            tls = False
            delivered_here = 0
            while line := await self._next_line(reader, writer):
                command = line.decode().strip()
                self.commands.append(command)
                verb = command.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    extensions = ["8BITMIME"]
                    if s.pipelining:
                        extensions.append("PIPELINING")
                    if s.starttls and not tls:
                        extensions.append("STARTTLS")
                    if s.auth_reply and (tls or not s.starttls):
                        extensions.append("AUTH PLAIN LOGIN")
                    lines = ["fault.test", *extensions]
                    for i, ext in enumerate(lines):
                        await say(("250 " if i == len(lines) - 1 else "250-") + ext)
                elif verb == "STARTTLS":
                    await say("220 2.0.0 go ahead")
                    await writer.start_tls(s.starttls)
                    tls = True
                elif verb == "AUTH":
                    await say(s.auth_reply)
                elif verb == "MAIL" and delivered_here == s.hang_up_at_mail_after:
                    await say("421 4.4.2 fault.test closing: idle too long")
                    return
                elif verb == "MAIL":
                    mail_from = command.split(":", 1)[1].strip().strip("<>").split(">")[0]
                    rcpts = []
                    await say("250 2.1.0 ok")
                elif verb == "RCPT":
                    rcpt = command.split(":", 1)[1].strip().strip("<>")
                    reply = s.rcpt_replies.get(rcpt, "250 2.1.5 ok")
                    if reply.startswith("2"):
                        rcpts.append(rcpt)
                    await say(reply)
                elif verb == "DATA" and not rcpts:
                    await say("554 5.5.1 no valid recipients")
                elif verb == "DATA":
                    await say("354 go on")
                    data = b""
                    while True:
                        chunk = await reader.readline()
                        if s.drop_mid_data and len(data) > 20:
                            writer.close()
                            return
                        if chunk in (b".\r\n", b""):
                            break
                        data += chunk
                    if s.drop_after_dot:
                        writer.close()
                        return
                    await asyncio.sleep(s.data_delay)
                    if s.data_reply.startswith("2"):
                        self.delivered.append(Delivered(mail_from, list(rcpts), data))
                        delivered_here += 1
                    await say(s.data_reply)
                    if s.drop_after_reply:
                        writer.close()
                        return
                elif verb == "RSET":
                    await say("250 ok")
                elif verb == "QUIT":
                    await say("221 bye")
                    break
                else:
                    await say("502 5.5.1 not implemented")
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            writer.close()
