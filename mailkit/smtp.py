"""The one SMTP client path: delivery and the connection test both go through ``run_session``.

It owns the SSRF-safe connect, the TLS modes, the overall deadline, and the mapping of every failure
to one human sentence plus a temporary/permanent verdict.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, TYPE_CHECKING

import aiosmtplib
from django.conf import settings
from django.utils.translation import gettext as _

from .netguard import UnsafeAddress, UnsafePort, check_port, connect_checked, parse_networks
from .smtp_data import send_body, send_data
from .smtp_pipelining import envelope_commands, send_pipelined

if TYPE_CHECKING:
    from .smtp_pool import SessionPool


class Security(StrEnum):
    STARTTLS = "starttls"  # STARTTLS required, certificate verified
    TLS = "tls"  # implicit TLS, certificate verified
    NONE = "none"  # plaintext; AUTH is refused
    OPPORTUNISTIC = "opportunistic"  # direct MX: STARTTLS when offered, unverified (RFC 7435)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)
    # An OAuth 2.0 access token: AUTH XOAUTH2 (or OAUTHBEARER, RFC 7628) instead of a password.
    oauth_token: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Outcome:
    """What happened: ``ok`` and the reply, or ``error`` with whether a retry could help."""

    ok: bool
    reply: str = ""
    error: str = ""
    permanent: bool = False
    auth_failed: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> reply
    transcript: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long this job took, connecting included when it opened one
    tls_failed: bool = False  # no verified TLS: not offered, bad certificate, handshake failed
    tls: bool = False  # the session was encrypted (verified too, unless OPPORTUNISTIC)
    note: str = ""  # which TLS policy applied, for the attempt record (MTA-STS)


# The message to send: bytes, or a file read from its start in chunks (big messages); None for
# the connection test's probe.
Data = bytes | IO[bytes] | None


class _Failure(Exception):
    def __init__(
        self,
        error: str,
        *,
        permanent: bool = False,
        auth_failed: bool = False,
        tls_failed: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.permanent = permanent
        self.auth_failed = auth_failed
        self.tls_failed = tls_failed


@functools.lru_cache(maxsize=8)
def _verifying_context(extra_ca_file: str) -> ssl.SSLContext:
    # One context per process: building one costs ~40-60 ms of CPU (TRAPS.md).
    context = ssl.create_default_context()  # honours SSL_CERT_FILE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    return context


@functools.lru_cache(maxsize=1)
def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_context(security: Security) -> ssl.SSLContext:
    if security is Security.OPPORTUNISTIC:
        return _opportunistic_context()
    return _verifying_context(settings.SENDGATE_EXTRA_CA_FILE)


def _reply(response: aiosmtplib.SMTPResponse) -> str:
    return f"{response.code} {response.message}".strip()


def _reply_lines(code: int, message: str) -> list[str]:
    """A reply as the server sent it: every line with its code, "250-" on all but the last."""
    lines = message.splitlines() or [""]
    return [
        f"S: {code}{'-' if n < len(lines) - 1 else ' '}{line}".rstrip()
        for n, line in enumerate(lines)
    ]


async def _exchange(
    transcript: list[str], call: Awaitable[aiosmtplib.SMTPResponse]
) -> aiosmtplib.SMTPResponse:
    """Await one command's reply and write it down, a refusal (e.g. AUTH's 535) included."""
    try:
        response = await call
    except aiosmtplib.SMTPResponseException as exc:
        transcript.extend(_reply_lines(exc.code, exc.message))
        raise
    transcript.extend(_reply_lines(response.code, response.message))
    return response


# The transcript's own notes, stored in English (a worker writes them) and translated when shown.
CONNECTED_NOTE = "* connected to "
HIDDEN_NOTE = " (credentials hidden)"


def readable_transcript(lines: list[str]) -> list[str]:
    """The transcript for the reader: protocol lines as they were, our notes in their language."""
    shown = []
    for line in lines:
        if line.startswith(CONNECTED_NOTE):
            line = "* " + _("connected to %(server)s") % {"server": line[len(CONNECTED_NOTE) :]}
        elif line.startswith("C: AUTH ") and line.endswith(HIDDEN_NOTE):
            line = line[: -len(HIDDEN_NOTE)] + " (" + _("credentials hidden") + ")"
        shown.append(line)
    return shown


class Connection:
    """One SMTP connection, secured and authenticated once, that carries messages in turn."""

    def __init__(self, target: Target, transcript: list[str]) -> None:
        self.target = target
        self.transcript = transcript
        self.client: aiosmtplib.SMTP | None = None
        self.broken = False  # the server went away; do not send the next message on it
        self.reached = False  # the TCP connection is open
        self.greeted = False  # the greeting came (over implicit TLS, if that was asked for)
        self.secured = False  # TLS is up (implicit, or after STARTTLS)
        self.mail_answered = False  # the server answered this transfer's MAIL FROM

    async def open(self) -> None:
        target, transcript = self.target, self.transcript
        check_port(target.port, settings.SENDGATE_SMTP_ALLOWED_PORTS)
        allowed = parse_networks(settings.SENDGATE_SMTP_ALLOWED_NETWORKS)
        sock = await connect_checked(target.host, target.port, allowed)
        self.reached = True
        transcript.append(f"{CONNECTED_NOTE}{target.label}")
        self.client = client = aiosmtplib.SMTP(
            hostname=target.host,
            sock=sock,
            use_tls=target.security is Security.TLS,
            start_tls=False,  # never opportunistic by accident: STARTTLS is decided below
            validate_certs=target.security in (Security.STARTTLS, Security.TLS),
            tls_context=tls_context(target.security),
            local_hostname=settings.SENDGATE_SMTP_HELO_NAME,
            timeout=settings.SENDGATE_SMTP_DEADLINE,
        )
        await _exchange(transcript, client.connect())
        self.greeted = True
        self.secured = target.security is Security.TLS
        transcript.append(f"C: EHLO {settings.SENDGATE_SMTP_HELO_NAME}")
        await _exchange(transcript, client.ehlo())
        if target.security is Security.STARTTLS or (
            target.security is Security.OPPORTUNISTIC and client.supports_extension("starttls")
        ):
            if not client.supports_extension("starttls"):
                raise _Failure(
                    _("The server does not offer STARTTLS, which this server requires."),
                    tls_failed=True,
                )
            transcript.append("C: STARTTLS")
            await _exchange(transcript, client.starttls())
            self.secured = True
            # The server may offer more (AUTH) once TLS is up: its second EHLO reply shows it.
            transcript.append(f"C: EHLO {settings.SENDGATE_SMTP_HELO_NAME}")
            await _exchange(transcript, client.ehlo())
        if target.username:
            if client.get_transport_info("sslcontext") is None:
                raise _Failure(
                    _("Refusing to send the password over a connection without TLS."),
                    permanent=True,
                )
            if target.oauth_token:
                await self._auth_oauth(client, target)
            else:
                await _authenticate(client, target, transcript)

    async def _auth_oauth(self, client: aiosmtplib.SMTP, target: Target) -> None:
        """AUTH with the access token: XOAUTH2 where offered (Microsoft, Google), else
        OAUTHBEARER. A refused token raises SMTPAuthenticationError like a refused password."""
        offered = client.server_auth_methods
        if "xoauth2" in offered:
            self.transcript.append("C: AUTH XOAUTH2 (token hidden)")
            call = client.auth_xoauth2(target.username, target.oauth_token)
        elif "oauthbearer" in offered:
            self.transcript.append("C: AUTH OAUTHBEARER (token hidden)")
            call = _auth_oauthbearer(client, target)
        else:
            raise _Failure(
                _(
                    "The server does not offer sign-in with a token (XOAUTH2 or OAUTHBEARER); "
                    "it offers: %(methods)s."
                )
                % {"methods": " ".join(m.upper() for m in offered) or _("no AUTH at all")}
            )
        await _exchange(self.transcript, call)  # the refusal (535) is written down too

    async def transfer(self, mail_from: str, recipients: list[str], data: Data) -> Outcome:
        """Send one message (or, with ``data=None``, only probe MAIL FROM and reset)."""
        client = self.client
        assert client is not None  # open() connected it
        self.mail_answered = False
        try:
            if data is None:  # connection test: is this sender allowed to write to someone?
                await self._mail(client, mail_from)
                return await self._probe(mail_from, recipients)
            body = io.BytesIO(data) if isinstance(data, bytes) else data
            if client.supports_extension("pipelining"):
                return await self._pipelined(client, mail_from, recipients, body)
            await self._mail(client, mail_from)
            refused: dict[str, str] = {}
            for rcpt in recipients:
                self.transcript.append(f"C: RCPT TO:<{rcpt}>")
                try:
                    await _exchange(self.transcript, client.rcpt(rcpt))
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = f"{exc.code} {exc.message}"
            if len(refused) == len(recipients):
                raise _every_recipient_refused(refused)
            self.transcript.append("C: DATA")
            response = await _exchange(self.transcript, send_data(client, body, client.timeout))
            return Outcome(ok=True, reply=_reply(response), refused=refused)
        except (_Failure, aiosmtplib.SMTPResponseException):
            # The server refused this message; reset for the next one. If it hung up after its
            # reply, the reply still stands (a 554 stays permanent), the connection is done.
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, OSError):
                self.broken = True
            raise

    async def _mail(self, client: aiosmtplib.SMTP, mail_from: str) -> None:
        self.transcript.append(f"C: MAIL FROM:<{mail_from}>")
        try:
            await _exchange(self.transcript, client.mail(mail_from))
        finally:
            self.mail_answered = client.is_connected

    async def _pipelined(
        self, client: aiosmtplib.SMTP, mail_from: str, recipients: list[str], body: IO[bytes]
    ) -> Outcome:
        """RFC 2920: MAIL FROM, the RCPTs and DATA in one write; their replies, in order, say
        what happened. The transcript shows the commands as sent, then the replies."""
        transcript = self.transcript
        commands = envelope_commands(mail_from, recipients)
        transcript.append(f"C: MAIL FROM:<{mail_from}>")
        transcript.extend(f"C: RCPT TO:<{rcpt}>" for rcpt in recipients)
        transcript.append("C: DATA")
        replies = await send_pipelined(client, commands, client.timeout)
        self.mail_answered = True
        for reply in replies:
            transcript.extend(_reply_lines(reply.code, reply.message))
        mail, *rcpts, data = replies
        refused = {
            rcpt: f"{reply.code} {reply.message}"
            for rcpt, reply in zip(recipients, rcpts, strict=True)
            if reply.code not in (250, 251)
        }
        if data.code == 354 and (mail.code != 250 or len(refused) == len(recipients)):
            # The server let DATA through with nobody to deliver to: end it with nothing sent.
            transcript.append("C: .")
            with contextlib.suppress(aiosmtplib.SMTPResponseException):  # its reply is written
                await _exchange(transcript, send_body(client, io.BytesIO(b""), client.timeout))
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, mail_from)
        if len(refused) == len(recipients):
            raise _every_recipient_refused(refused)
        if data.code != 354:
            raise aiosmtplib.SMTPDataError(data.code, data.message)
        response = await _exchange(transcript, send_body(client, body, client.timeout))
        return Outcome(ok=True, reply=_reply(response), refused=refused)

    async def _probe(self, mail_from: str, recipients: list[str]) -> Outcome:
        """RCPT TO after MAIL FROM, then RSET: many servers (Postfix with sender-login checks)
        only refuse a sender these credentials may not use at RCPT, so a test that stopped after
        MAIL FROM would pass credentials that cannot send a single message."""
        client, transcript = self.client, self.transcript
        assert client is not None  # open() connected it
        for rcpt in recipients:
            transcript.append(f"C: RCPT TO:<{rcpt}>")
            try:
                transcript.append(f"S: {_reply(await client.rcpt(rcpt))}")
            except aiosmtplib.SMTPRecipientRefused as exc:
                transcript.append(f"S: {exc.code} {exc.message}")
                permanent = 500 <= exc.code < 600
                raise _Failure(
                    _(
                        "The server accepted the login but refused mail from %(sender)s "
                        "(%(code)s %(text)s). Check that these credentials may send as this "
                        "address."
                    )
                    % {"sender": mail_from, "code": exc.code, "text": exc.message},
                    permanent=permanent,
                    auth_failed=permanent,  # these credentials cannot send as this sender
                ) from exc
        transcript.append("C: RSET")
        await client.rset()
        return Outcome(
            ok=True,
            reply=_("The server accepted the connection, the sender and a recipient.")
            if recipients
            else _("The server accepted the connection and the sender."),
        )

    def drop(self) -> None:
        """Let go of a connection the server already closed: there is nobody to say QUIT to."""
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        if self.client is None:
            return
        try:
            await asyncio.wait_for(self.client.quit(), timeout=2)
        except Exception:  # noqa: BLE001 - the outcome is already decided
            self.client.close()
        self.client = None


def _every_recipient_refused(refused: dict[str, str]) -> _Failure:
    return _Failure(
        _("The server refused every recipient: %(replies)s")
        % {"replies": "; ".join(f"{r}: {c}" for r, c in refused.items())},
        permanent=all(reply.startswith("5") for reply in refused.values()),
    )


# The mechanism tried, best first. Sendgate only authenticates over TLS, where PLAIN is as safe as
# any and the most widely working; CRAM-MD5 is often offered and then refused. One try only: a
# wrong password should cost the user one failed login at their provider, not one per mechanism.
AUTH_PREFERENCE = ("plain", "login", "cram-md5")


async def _authenticate(
    client: aiosmtplib.SMTP, target: Target, transcript: list[str]
) -> aiosmtplib.SMTPResponse:
    offered = [m for m in AUTH_PREFERENCE if m in client.server_auth_methods]
    if not offered:
        raise _Failure(
            _("The server offers no login method Sendgate supports (PLAIN, LOGIN, CRAM-MD5)."),
            permanent=True,
        )
    mechanism = offered[0]
    transcript.append(f"C: AUTH {mechanism.upper()}{HIDDEN_NOTE}")
    method = getattr(client, f"auth_{mechanism.replace('-', '')}")
    start = len(transcript)
    try:
        return await _exchange(transcript, method(target.username, target.password))
    finally:
        # A server that echoes what it got must not put the password on the page.
        transcript[start:] = [_redacted(line, target.password) for line in transcript[start:]]


def _redacted(line: str, password: str) -> str:
    if not password:
        return line
    plain = base64.b64encode(password.encode()).decode()
    for secret in (password, plain):
        line = line.replace(secret, "…")
    return line


async def _auth_oauthbearer(client: aiosmtplib.SMTP, target: Target) -> aiosmtplib.SMTPResponse:
    """RFC 7628: a GS2 header and key/value pairs separated by ^A, base64 on the wire. On a
    refused token the server sends a 334 error challenge; the client answers ^A to end it."""
    authzid = target.username.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 saslname
    message = (
        f"n,a={authzid},\x01host={target.host}\x01port={target.port}\x01"
        f"auth=Bearer {target.oauth_token}\x01\x01"
    )
    encoded = base64.b64encode(message.encode())
    response = await client.execute_command(b"AUTH", b"OAUTHBEARER", encoded)
    if response.code == 334:
        response = await client.execute_command(base64.b64encode(b"\x01"))
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)
    return response


Job = tuple[str, list[str], Data]  # envelope sender, recipients, message (None: probe)


class Sender:
    """Sends jobs to one server over one connection, kept open between calls, reopened when it
    breaks. Each job has its own overall deadline (connecting included when it opens the
    connection) and its own outcome. When the server cannot be reached or refuses us (TLS, AUTH),
    every later job gets that outcome without another try: a dead server costs one deadline."""

    def __init__(
        self,
        target: Target,
        deadline: float | None = None,
        finish_by: float | None = None,
        pool: SessionPool | None = None,
    ) -> None:
        self.target = target
        self.deadline = deadline if deadline is not None else settings.SENDGATE_SMTP_DEADLINE
        # Event-loop time by which any job must be done, whatever is left of its own deadline:
        # a message tried on several hosts has one deadline for all of them.
        self.finish_by = finish_by
        # Where the connection comes from and goes back to (delivery); without one, the
        # connection is opened here and closed by close() (the connection test: a real login).
        self.pool = pool
        self.transcript: list[str] = []
        self.connection: Connection | None = None
        self.open_failure: Outcome | None = None

    async def send(self, jobs: list[Job], stop_at: float | None = None) -> list[Outcome | None]:
        """Send ``jobs`` in turn; jobs not started by ``stop_at`` (event-loop time) get None."""
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome | None] = []
        for job in jobs:
            if self.open_failure is not None:
                outcomes.append(self.open_failure)
            elif stop_at is not None and loop.time() >= stop_at:
                outcomes.append(None)
            else:
                outcomes.append(await self._send_one(*job))
        return outcomes

    async def _send_one(self, mail_from: str, recipients: list[str], data: Data) -> Outcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ends = started + self.deadline
        if self.finish_by is not None:
            ends = min(ends, self.finish_by)
        reused = False
        if self.connection is None and self.pool is not None:
            self.connection = self.pool.take(self.target)
            if self.connection is not None:
                reused = True
                self.connection.transcript = self.transcript
        opening = self.connection is None
        in_open = opening  # until the session is ready for MAIL FROM
        try:
            async with asyncio.timeout_at(ends):
                if self.connection is None:
                    await self._open()
                in_open = False
                assert self.connection is not None  # opened just now if it was not
                try:
                    outcome = await self.connection.transfer(mail_from, recipients, data)
                except Exception as exc:
                    if not (reused and _hung_up_before_mail(exc, self.connection)):
                        raise
                    # The server closed the kept session just as we took it (an idle timeout):
                    # nothing was sent, so this is the same attempt on a fresh connection.
                    self.connection.drop()
                    opening = in_open = True
                    await self._open()
                    in_open = False
                    assert self.connection is not None
                    outcome = await self.connection.transfer(mail_from, recipients, data)
                outcome.tls = self.connection.secured
        except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
            outcome = _describe(exc, self.target, self.deadline)
            outcome.tls = self.connection is not None and self.connection.secured
            if self._maybe_starttls_port(exc):
                outcome.error += " " + _(
                    "The server may expect STARTTLS on this port: choose STARTTLS (usually port "
                    "587), or implicit TLS on port 465."
                )
            refused_only = isinstance(exc, _Failure | aiosmtplib.SMTPResponseException)
            broken = self.connection is not None and self.connection.broken
            if in_open or not refused_only or broken:
                await self.close()
            # The server cannot be reached or refuses us (TLS, AUTH), or the session it gave
            # broke at once: the batch's later jobs get this outcome. A refusal of this message
            # (its sender, its recipients, its content) is this message's alone.
            if in_open or (opening and not refused_only):
                self.open_failure = outcome
        outcome.transcript = self.transcript
        outcome.seconds = loop.time() - started
        return outcome

    async def _open(self) -> None:
        self.connection = Connection(self.target, self.transcript)
        await self.connection.open()

    def _maybe_starttls_port(self, exc: Exception) -> bool:
        """Implicit TLS was chosen and the handshake broke off (not a certificate problem): the
        classic sign of a STARTTLS port such as 587 answering in plain text."""
        connection = self.connection
        exc = _unwrapped(exc)
        return (
            self.target.security is Security.TLS
            and connection is not None
            and connection.reached
            and not connection.greeted
            and not isinstance(exc, ssl.SSLCertVerificationError)
            and isinstance(exc, ssl.SSLError | aiosmtplib.SMTPException | OSError | TimeoutError)
        )

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None

    async def finish(self) -> None:
        """Done with this batch: the connection goes back to the pool (or is closed)."""
        if self.connection is not None and self.pool is not None:
            self.pool.give_back(self.target, self.connection)
            self.connection = None
        await self.close()


def _hung_up_before_mail(exc: Exception, connection: Connection) -> bool:
    """The server was gone before it answered MAIL FROM: it closed the connection, or said it
    would (421, e.g. its idle timeout) and did. Nothing of the message was accepted."""
    if connection.mail_answered:
        return False
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError)


async def send_many(
    target: Target,
    jobs: list[Job],
    deadline: float | None = None,
    stop_at: float | None = None,
    finish_by: float | None = None,
) -> list[Outcome | None]:
    """Send ``jobs`` over one connection and close it (see Sender)."""
    sender = Sender(target, deadline, finish_by)
    try:
        return await sender.send(jobs, stop_at)
    finally:
        await sender.close()


async def run_session(
    target: Target,
    mail_from: str,
    recipients: list[str] | None = None,
    data: Data = None,
    deadline: float | None = None,
) -> Outcome:
    """Connect, secure, authenticate and send ``data`` (or only probe MAIL FROM when None)."""
    [outcome] = await send_many(target, [(mail_from, recipients or [], data)], deadline)
    assert outcome is not None  # there is no stop_at: every job gets an outcome
    return outcome


def _unwrapped(exc: Exception) -> Exception:
    """aiosmtplib reports a failed TLS handshake on connect as SMTPConnectError; the SSL error
    inside says what actually went wrong (an untrusted certificate, a plain-text peer)."""
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, Exception):
        return exc.__cause__
    return exc


def _describe(exc: Exception, target: Target, deadline: float) -> Outcome:
    """Map a failure to the sentence a user reads and whether retrying could help."""
    exc = _unwrapped(exc)
    label = target.label
    if isinstance(exc, _Failure):
        return Outcome(
            ok=False,
            error=exc.error,
            permanent=exc.permanent,
            auth_failed=exc.auth_failed,
            tls_failed=exc.tls_failed,
        )
    if isinstance(exc, UnsafeAddress | UnsafePort):
        return Outcome(ok=False, error=_("Not allowed: %(reason)s.") % {"reason": exc})
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Outcome(
            ok=False,
            error=_("The TLS certificate of %(host)s is not valid: %(reason)s.")
            % {"host": target.host, "reason": exc.verify_message or exc.reason},
            tls_failed=True,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and 500 <= exc.code < 600:
        if target.oauth_token:
            return Outcome(
                ok=False,
                error=_(
                    "The server refused the sign-in token (%(code)s %(text)s). Check that SMTP "
                    "sign-in (Authenticated SMTP) is on for the mailbox, and that the mailbox you "
                    "signed in with may send as this address."
                )
                % {"code": exc.code, "text": exc.message},
                auth_failed=True,
            )
        if "5.7.30" in exc.message or "basic authentication is not supported" in (
            exc.message.lower()
        ):
            return Outcome(
                ok=False,
                error=_(
                    "The server no longer accepts passwords (%(code)s %(text)s). Use “Sign in "
                    "with Microsoft” (or your provider) instead of a password."
                )
                % {"code": exc.code, "text": exc.message},
                auth_failed=True,
            )
        return Outcome(
            ok=False,
            error=_("The server rejected the username or password (%(code)s %(text)s).")
            % {"code": exc.code, "text": exc.message},
            auth_failed=True,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Outcome(
            ok=False,
            error=_("The server answered %(code)s %(text)s.")
            % {"code": exc.code, "text": exc.message},
            permanent=500 <= exc.code < 600,
        )
    if isinstance(exc, TimeoutError):
        return Outcome(
            ok=False,
            error=_("%(server)s did not finish within %(seconds)s seconds.")
            % {"server": label, "seconds": f"{deadline:g}"},
        )
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(ok=False, error=_("%(server)s refused the connection.") % {"server": label})
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return Outcome(
            ok=False,
            error=_("The host name %(host)s could not be resolved.") % {"host": target.host},
        )
    if isinstance(exc, ssl.SSLError):
        return Outcome(
            ok=False,
            error=_("TLS with %(server)s failed: %(reason)s.")
            % {"server": label, "reason": exc.reason or exc},
            tls_failed=True,
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return Outcome(ok=False, error=_("%(server)s closed the connection.") % {"server": label})
    if isinstance(exc, aiosmtplib.SMTPException):
        return Outcome(
            ok=False,
            error=_("SMTP error with %(server)s: %(reason)s.") % {"server": label, "reason": exc},
        )
    return Outcome(
        ok=False,
        error=_("Could not reach %(server)s: %(reason)s.") % {"server": label, "reason": exc},
    )
