"""Run the SMTP submission listener until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

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
        parser.add_argument(
            "--processes",
            type=int,
            help="Listener processes sharing the ports (SENDGATE_SUBMISSION_PROCESSES; "
            "0: one per CPU core).",
        )

    def handle(
        self,
        *args,
        host: str | None,
        port: int | None,
        reuse_port: bool,
        processes: int | None,
        **options,
    ):
        if processes is None:
            processes = settings.SENDGATE_SUBMISSION_PROCESSES
        # Each process stores its messages in one database thread: one per core uses them all.
        processes = processes or len(os.sched_getaffinity(0))
        overrides: dict = {"reuse_port": reuse_port or processes > 1}
        if host:
            overrides["host"] = host
        if port:
            overrides["port"] = port
        config = ListenerConfig.from_settings(**overrides)
        connections.close_all()  # a child must not share its parent's database connection
        children = []
        for _ in range(processes - 1):
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    asyncio.run(self._serve(config, announce=False))
                    status = 0
                finally:
                    os._exit(status)
            children.append(pid)
        try:
            asyncio.run(self._serve(config, announce=True))
        finally:
            for pid in children:  # the parent's SIGTERM ends them too
                os.kill(pid, signal.SIGTERM)
            for pid in children:
                os.waitpid(pid, 0)

    async def _serve(self, config: ListenerConfig, *, announce: bool) -> None:
        servers = await start_servers(config)
        if announce:
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
