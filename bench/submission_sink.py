"""A lean SMTP sink for the benchmark: asyncio streams, STARTTLS + AUTH required, no parsing.

aiosmtpd tops out near 400-700 messages/s here (TRAPS.md); this one only has to find the
``X-Bench-Seq`` header and say 250. Each accepted message is reported on stdout as
``<seq> <unix time>`` so the benchmark can measure end-to-end latency.

    python bench/submission_sink.py CERT_PEM PORT [PORT ...]
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import sys
import time

_SEQ = re.compile(rb"^X-Bench-Seq: (\d+)", re.MULTILINE)


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls_context) -> None:
    tls = authenticated = False
    writer.write(b"220 sink ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                last = b"250 AUTH PLAIN LOGIN\r\n" if tls else b"250 STARTTLS\r\n"
                writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n" + last)
            elif verb == b"STAR" and not tls:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(tls_context)
                tls = True
            elif verb == b"AUTH" and tls:
                words = line.split()
                if words[1].upper() == b"LOGIN":
                    for prompt in ([] if len(words) > 2 else [b"VXNlcm5hbWU6"]) + [b"UGFzc3dvcmQ6"]:
                        writer.write(b"334 " + prompt + b"\r\n")
                        await reader.readline()
                elif len(words) == 2:  # PLAIN without the initial response
                    writer.write(b"334 \r\n")
                    await reader.readline()
                authenticated = True
                writer.write(b"235 2.7.0 ok\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                writer.write(b"250 ok\r\n" if authenticated else b"530 5.7.0 auth first\r\n")
            elif verb == b"DATA" and authenticated:
                writer.write(b"354 go\r\n")
                data = await reader.readuntil(b"\r\n.\r\n")
                found = _SEQ.search(data)
                writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
                if found:
                    sys.stdout.write(f"{found.group(1).decode()} {time.time():.6f}\n")
                    sys.stdout.flush()
                continue
            elif verb in (b"RSET", b"NOOP"):
                writer.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"502 5.5.1 no\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    except asyncio.CancelledError:  # stopped with sessions still open (kept by the workers)
        pass
    finally:
        writer.close()


async def main(cert_file: str, ports: list[int]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    servers = [
        await asyncio.start_server(
            lambda r, w: session(r, w, context),
            "127.0.0.1",
            port,
            backlog=512,
            limit=64 * 1024 * 1024,  # a whole message is read at once; bench/big_messages.py
        )
        for port in ports
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
