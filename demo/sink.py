"""A recording SMTP server (aiosmtpd) for the demo's stand-in servers and for the tests.

It requires AUTH and TLS like a real submission server: STARTTLS on a plain port, or implicit TLS.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import SMTP as SMTP_POLICY

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data, policy=SMTP_POLICY)


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    on_message: Callable[[Received], None] | None = None
    implicit_tls: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd hook
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or envelope.content,
            login=session.auth_data.login.decode() if session.auth_data else None,
            tls=self.implicit_tls or session.ssl is not None,
        )
        with self.lock:
            self.messages.append(received)
            number = len(self.messages)
        if self.on_message:
            self.on_message(received)
        return f"250 2.0.0 Ok: queued as {number}"


class PasswordAuthenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


def server_tls_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def start_sink(
    *,
    host: str,
    port: int,
    tls_context: ssl.SSLContext,
    users: dict[str, str],
    implicit_tls: bool = False,
    handler: RecordingHandler | None = None,
    offer_starttls: bool = True,
) -> tuple[Controller, RecordingHandler]:
    """Start a sink in a background thread; ``port=0`` is not supported by aiosmtpd, pick one."""
    handler = handler or RecordingHandler()
    handler.implicit_tls = implicit_tls
    auth = {"authenticator": PasswordAuthenticator(users), "auth_required": True}
    if implicit_tls:
        # aiosmtpd only knows about STARTTLS; with implicit TLS the whole session is encrypted,
        # so its auth_require_tls check must be off.
        controller = Controller(
            handler,
            hostname=host,
            port=port,
            ssl_context=tls_context,
            server_hostname="localhost",
            auth_require_tls=False,
            **auth,
        )
    else:
        controller = Controller(
            handler,
            hostname=host,
            port=port,
            tls_context=tls_context if offer_starttls else None,
            require_starttls=offer_starttls,
            auth_require_tls=True,
            **auth,
        )
    controller.start()
    return controller, handler
