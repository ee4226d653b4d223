"""A lean SMTP sink for benchmarks: STARTTLS, AUTH PLAIN/LOGIN, accepts everything.

aiosmtpd manages only ~400-700 messages/s here, so it would measure itself, not Sendgate.
Run: python bench/sink.py --ports 2601,2602 --cert cert.pem --out accepted.json
On SIGTERM it writes {"accepted": [[unix_time, message_id, port], ...]} to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import time

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class Sink:
    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.accepted: list[tuple[float, str, int]] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        secure = False

        def say(line: bytes) -> None:
            writer.write(line + b"\r\n")

        say(b"220 sink ESMTP")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    ext = [b"250-sink", b"250-PIPELINING", b"250-8BITMIME"]
                    if self.tls and not secure:
                        ext.append(b"250-STARTTLS")
                    ext.append(b"250 AUTH PLAIN LOGIN")
                    say(b"\r\n".join(ext))
                elif verb == b"STAR":
                    say(b"220 go ahead")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    secure = True
                elif verb == b"AUTH":
                    if line.split()[1].upper() == b"LOGIN":
                        for prompt in (b"334 VXNlcm5hbWU6", b"334 UGFzc3dvcmQ6"):
                            say(prompt)
                            await writer.drain()
                            await reader.readline()
                    say(b"235 2.7.0 ok")
                elif verb == b"DATA":
                    say(b"354 go on")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    match = MESSAGE_ID.search(data)
                    self.accepted.append(
                        (time.time(), match.group(1).decode() if match else "", port)
                    )
                    say(b"250 2.0.0 ok")
                elif verb == b"QUIT":
                    say(b"221 bye")
                    await writer.drain()
                    break
                else:  # MAIL, RCPT, RSET, NOOP
                    say(b"250 ok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # stopped with sessions still open (kept by the workers)
            pass
        finally:
            writer.close()


async def main(ports: list[int], cert: str | None, out: str) -> None:
    tls = None
    if cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert)
    sink = Sink(tls)
    servers = [await asyncio.start_server(sink.session, "127.0.0.1", p) for p in ports]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    with open(out, "w") as fh:
        json.dump({"accepted": sink.accepted}, fh)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", required=True)
    parser.add_argument("--cert", help="PEM with key and certificate chain; enables STARTTLS")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(main([int(p) for p in args.ports.split(",")], args.cert, args.out))
