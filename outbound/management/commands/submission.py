"""Run the SMTP submission listener until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal

from django.core.management.base import BaseCommand

from outbound.listener import ListenerConfig, start_servers


class Command(BaseCommand):
    help = "Run the SMTP submission listener (STARTTLS, AUTH with app passwords)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", help="Address to listen on (SENDGATE_SUBMISSION_HOST).")
        parser.add_argument("--port", type=int, help="STARTTLS port (SENDGATE_SUBMISSION_PORT).")
        parser.add_argument(
            "--reuse-port",
            action="store_true",
            help="Set SO_REUSEPORT so several listener processes can share the ports.",
        )

    def handle(self, *args, host: str | None, port: int | None, reuse_port: bool, **options):
        overrides: dict = {"reuse_port": reuse_port}
        if host:
            overrides["host"] = host
        if port:
            overrides["port"] = port
        asyncio.run(self._serve(ListenerConfig.from_settings(**overrides)))

    async def _serve(self, config: ListenerConfig) -> None:
        servers = await start_servers(config)
        ports = f"{config.port} (STARTTLS)"
        if config.tls_port:
            ports += f", {config.tls_port} (implicit TLS)"
        self.stdout.write(f"SMTP submission on {config.host} port {ports}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        for server in servers:
            server.close()
            await server.wait_closed()
