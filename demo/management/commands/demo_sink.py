"""Run a local SMTP server that stands in for a real one in the demo, and print what it receives."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from demo import world as demo
from demo.sink import Received, server_tls_context, start_sink


class Command(BaseCommand):
    help = "Run a demo SMTP server (STARTTLS + AUTH) on localhost that prints each message."

    def add_arguments(self, parser) -> None:
        parser.add_argument("role", choices=["gateway", "partner"])

    def handle(self, *args, role: str, **options) -> None:
        demo.ensure_certificates()
        port = demo.GATEWAY_PORT if role == "gateway" else demo.PARTNER_PORT
        login, password = demo.GATEWAY_LOGIN if role == "gateway" else demo.PARTNER_LOGIN
        controller, handler = start_sink(
            host="127.0.0.1",
            port=port,
            tls_context=server_tls_context(str(demo.server_cert_file())),
            users={login: password},
        )
        handler.on_message = lambda received: self._show(role, received)
        self.stdout.write(f"{role} SMTP server on localhost:{port} (STARTTLS, AUTH {login})")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()

    def _show(self, role: str, received: Received) -> None:
        msg = received.message
        self.stdout.write(
            f"[{role}] MAIL FROM:<{received.mail_from}> RCPT TO:{received.rcpt_tos} "
            f"auth={received.login} tls={received.tls}\n"
            f"[{role}]   From: {msg['From']} | Sender: {msg['Sender'] or '-'} | "
            f"Subject: {msg['Subject']}\n"
        )
        if msg.get_content_maintype() == "text":
            for line in msg.get_content().splitlines():
                if "code" in line.lower():
                    self.stdout.write(f"[{role}]   {line}\n")
