"""The SMTP submission listener (aiosmtpd): STARTTLS, AUTH with app passwords, then the checks
of ``submission.prepare``.

aiosmtpd runs the protocol on an asyncio loop; every database step runs in Django's one
sync thread (``in_db``), and password hashing in a worker thread so it stalls nobody. Messages
are stored by the process's ``GroupCommit``: many sessions' messages in one transaction.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import ssl
import time
import warnings
from base64 import b64decode
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    BOGUS_LIMIT,
    MISSING,
    SMTP,
    AuthResult,
    LoginPassword,
    TLSSetupException,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from directory.models import Account
from outbox.queue import Pending

from . import credentials, metrics, submission
from .group_commit import GroupCommit, Submission, WakeUps, in_db
from .models import AppPassword
from .submission import (
    Refused,
    allowed_senders,
    check_daily_limit,
    check_domain_verified,
    check_recipient,
    check_recipient_count,
    check_sender,
    sent_today,
)

log = logging.getLogger("sendgate.submission")

# aiosmtpd warns about AUTH without its STARTTLS demand; on the implicit-TLS port every byte is
# already encrypted, which aiosmtpd cannot see. (Its login_data deprecation lines are dropped by
# the settings' log filter.)
warnings.filterwarnings(
    "ignore", message="Requiring AUTH while not requiring TLS", module="aiosmtpd"
)


@dataclass(frozen=True)
class ListenerConfig:
    host: str
    port: int
    tls_port: int  # implicit TLS; 0 for none
    tls_context: ssl.SSLContext | None
    hostname: str
    max_message_bytes: int
    plaintext_auth_on_loopback: bool = False
    reuse_port: bool = False  # several listener processes may share the ports
    max_sessions_per_ip: int = 20
    max_sessions_per_account: int = 10

    @classmethod
    def from_settings(cls, **overrides: Any) -> ListenerConfig:
        values: dict[str, Any] = {
            "host": settings.SENDGATE_SUBMISSION_HOST,
            "port": settings.SENDGATE_SUBMISSION_PORT,
            "tls_port": settings.SENDGATE_SUBMISSION_TLS_PORT,
            "tls_context": server_tls_context(
                settings.SENDGATE_SUBMISSION_CERT_FILE, settings.SENDGATE_SUBMISSION_KEY_FILE
            ),
            "hostname": settings.SENDGATE_SUBMISSION_HOSTNAME,
            "max_message_bytes": settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES,
            "plaintext_auth_on_loopback": settings.SENDGATE_SUBMISSION_PLAINTEXT_AUTH_ON_LOOPBACK,
            "max_sessions_per_ip": settings.SENDGATE_SUBMISSION_MAX_SESSIONS_PER_IP,
            "max_sessions_per_account": settings.SENDGATE_SUBMISSION_MAX_SESSIONS_PER_ACCOUNT,
        }
        return cls(**(values | overrides))


def server_tls_context(cert_file: str, key_file: str = "") -> ssl.SSLContext:
    if not cert_file:
        raise ImproperlyConfigured(
            "Set SENDGATE_SUBMISSION_CERT_FILE: the submission port offers STARTTLS."
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file or None)
    return context


@dataclass(frozen=True)
class Identity:
    """What a successful AUTH leaves in the session: the account, read once per session, and the
    app password it logged in with (re-checked while the session lasts)."""

    account: Account
    login: str
    app_password_id: int


# How long a "still valid" answer for a session's app password and account is trusted. Revoking
# an app password or deactivating an account must end its open sessions within 5 seconds; a
# short cache keeps a pipelined burst of RCPTs from costing one query each. The same holds for
# what the session knows of its senders (a revoked alias) and of its daily count.
RECHECK_SECONDS = 2.0


@dataclass
class SenderRules:
    """What a session knows of its account's senders and of its messages of the last 24 hours,
    read at most every RECHECK_SECONDS instead of at every MAIL and DATA."""

    allowed: set[str]
    sent: int  # as counted then, plus the messages this session stored since
    read_until: float = field(default_factory=lambda: time.monotonic() + RECHECK_SECONDS)


def _read_sender_rules(account: Account) -> SenderRules:
    return SenderRules(allowed_senders(account), sent_today(account))


def _revoked_reply() -> str:
    return "421 4.7.0 This login was revoked or its account disabled; closing connection"


def _peer_ip(session) -> str:
    peer = session.peer
    return peer[0] if isinstance(peer, tuple) else "0.0.0.0"  # noqa: S104 - a label, not a bind


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _refusal(reply: str) -> AuthResult:
    """A failed AUTH answered with ``reply`` instead of aiosmtpd's 535."""
    return AuthResult(success=False, handled=False, message=reply)


class SessionCounts:
    """Open sessions per client address and per account, so one sender cannot take every slot
    (and the memory that comes with them) from the others."""

    def __init__(self, per_ip: int, per_account: int) -> None:
        self.per_ip, self.per_account = per_ip, per_account
        self.by_ip: Counter[str] = Counter()
        self.by_account: Counter[int] = Counter()

    def enter_ip(self, ip: str) -> bool:
        if self.by_ip[ip] >= self.per_ip:
            return False
        self.by_ip[ip] += 1
        return True

    def enter_account(self, account_id: int) -> bool:
        if self.by_account[account_id] >= self.per_account:
            return False
        self.by_account[account_id] += 1
        return True

    def leave(self, counter: Counter, key: object) -> None:
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]


# A message bigger than this waits for its handler on disk, not in the listener's memory.
SPOOL_IN_MEMORY = 1024 * 1024

TOO_MANY_FROM_IP = "421 4.7.0 Too many connections from your address; try again later"
TOO_MANY_FOR_ACCOUNT = "421 4.7.0 Too many sessions for this account; try again later"


# A path as nearly every client writes it, <dot-atom@host.name> and maybe parameters after a space:
# read with a regular expression instead of the email package's full RFC 5322 parser, which costs
# more than the rest of a MAIL or RCPT command. Anything else goes to aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]*|[ \t]+([^ \t\r\n(].*))",
    re.DOTALL,
)


_HOOK_NAMES: dict[type, list[str]] = {}


def _hook_names(cls: type) -> list[str]:
    """The names aiosmtpd looks for on a session and its handler: command and AUTH methods,
    hooks. It finds them at every connection with inspect.getmembers() over dir(), which reads
    every attribute (about a tenth of the listener's CPU with one message per session); the
    session's and the handler's __dir__ list only these, found once per class."""
    names = _HOOK_NAMES.get(cls)
    if names is None:
        prefixes = ("smtp_", "auth_", "handle_")
        names = _HOOK_NAMES[cls] = [name for name in dir(cls) if name.startswith(prefixes)]
    return names


class SubmissionSMTP(SMTP):
    """aiosmtpd's SMTP, with the TLS demand relaxed per connection for loopback clients (demo),
    caps on concurrent sessions per client address and per account, and a session that ends as
    soon as its login is revoked."""

    def __init__(
        self,
        handler,
        *,
        implicit_tls: bool,
        plaintext_on_loopback: bool,
        counts: SessionCounts,
        **kwargs,
    ):
        super().__init__(handler, **kwargs)
        self.implicit_tls = implicit_tls
        self.plaintext_on_loopback = plaintext_on_loopback
        self.counts = counts
        self.counted_ip: str | None = None
        self.counted_account: int | None = None
        self.login_revoked = False
        self._valid_until = 0.0  # time.monotonic() up to which the last check holds
        self.known_sender_rules: SenderRules | None = None

    def __dir__(self) -> list[str]:
        return _hook_names(type(self))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's reading of a MAIL or RCPT path (address, parameters), sooner."""
        match = _SIMPLE_PATH.fullmatch(arg)
        if match is None:
            return super()._getaddr(arg)
        address = match[1]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match[2] or ""

    async def sender_rules(self, account: Account) -> SenderRules:
        """The session's ``SenderRules``, read again once they are RECHECK_SECONDS old."""
        rules = self.known_sender_rules
        if rules is None or time.monotonic() >= rules.read_until:
            rules = self.known_sender_rules = await in_db(_read_sender_rules, account)
        return rules

    async def login_still_valid(self) -> bool:
        """Re-check the session's app password and account, at most every RECHECK_SECONDS."""
        identity = getattr(self.session, "auth_data", None)
        if not isinstance(identity, Identity):
            return True  # not logged in: aiosmtpd's auth_required answers these commands
        if self.login_revoked:
            return False
        if time.monotonic() < self._valid_until:
            return True
        try:
            valid = await in_db(credentials.still_valid, identity.app_password_id)
        except DatabaseError:
            log.exception("submission login of %s not re-checked", identity.login)
            return True  # checked again at the next command, and afresh before a message is stored
        if valid:
            self.login_found_valid()
        else:
            self.login_revoked = True
            log.warning("submission session of %s ended: login revoked", identity.login)
        return valid

    def login_found_valid(self) -> None:
        """The login was just found valid (at AUTH or a re-check): trusted for RECHECK_SECONDS."""
        self._valid_until = time.monotonic() + RECHECK_SECONDS

    async def check_auth_needed(self, caller_method: str) -> bool:
        """aiosmtpd asks this before MAIL, RCPT, DATA, VRFY and HELP: refuse them (421, hang up)
        once the session's login is revoked, not only before AUTH."""
        if await super().check_auth_needed(caller_method):
            return True
        if await self.login_still_valid():
            return False
        await self.push(_revoked_reply())
        if self.transport is not None:
            self.transport.close()
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None  # False when called again after STARTTLS
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else ""
        if first and self.plaintext_on_loopback and _is_loopback(ip):
            # aiosmtpd has only a per-server switch; this is the one connection's copy.
            self._auth_require_tls = False
            self.require_starttls = False
        if first and self.counts.enter_ip(ip):
            self.counted_ip = ip
        super().connection_made(transport)

    async def _handle_client(self) -> None:
        if self.counted_ip is None:
            log.warning("submission: too many sessions from %s", _peer_ip(self.session))
            await self.push(TOO_MANY_FROM_IP)
            if self.transport is not None:  # None once the client hung up
                self.transport.close()
            return
        await self._serve_commands()

    # aiosmtpd 1.4's own command loop logs every line twice (sanitising it even with its logger
    # off), starts a new timer for every command and logs every reply: on a stream of small
    # messages a fifth of its CPU (a bare aiosmtpd server: 0.41 -> 0.33 ms per message). The
    # loop and timer below keep its replies, limits and checks without those. Like smtp_DATA,
    # they follow aiosmtpd 1.4's internals (its reader, writer and command table).

    async def _serve_commands(self) -> None:
        """aiosmtpd's ``_handle_client`` after the PROXY header (Sendgate takes none)."""
        await self.push(f"220 {self.hostname} {self.__ident__}")
        unknown_left = BOGUS_LIMIT
        while self.transport is not None:
            try:
                line = await self._read_command_line()
                if line is None:
                    await self.push("500 Command line too long")
                    continue
                name, _space, arg_bytes = line.partition(b" ")
                try:
                    command = name.upper().decode("ascii")
                except UnicodeDecodeError:
                    command = None
                if not line or command is None:
                    await self.push("500 Error: bad syntax")
                    continue
                # SMTPUTF8 is on: an argument keeps any byte it had (surrogateescape).
                arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
                assert self.session is not None  # made in connection_made
                if self.session.extended_smtp:
                    limit = self.command_size_limits[command]
                else:
                    limit = self.command_size_limit
                if len(line) > limit:
                    await self.push("500 Command line too long")
                    continue
                if not self._tls_handshake_okay and command != "QUIT":
                    await self.push("554 Command refused due to lack of security")
                    continue
                if (
                    self.require_starttls
                    and not self._tls_protocol
                    and command not in ALLOWED_BEFORE_STARTTLS
                ):
                    await self.push("530 Must issue a STARTTLS command first")
                    continue
                method = self._smtp_methods.get(command)
                if method is None:
                    log.warning("submission: unrecognised command from %s", _peer_ip(self.session))
                    unknown_left -= 1
                    if unknown_left < 1:
                        await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
                        self.transport.close()
                        continue
                    await self.push(f'500 Error: command "{command}" not recognized')
                    continue
                self._reset_timeout()
                await method(arg)
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()  # the client hung up
                raise
            except Exception as error:  # noqa: BLE001 - answered as aiosmtpd answers it
                await self._answer_failure(error)

    async def _answer_failure(self, error: Exception) -> None:
        """Answer a command that raised ``error``, as aiosmtpd's loop does."""
        try:
            status = await self.handle_exception(error)
        except Exception:
            log.exception("submission: a command's failure could not be described")
            status = "500 Error: Cannot describe error"
        if isinstance(error, TLSSetupException):
            if self.transport is not None:
                self.transport.close()
            self.connection_lost(error)
        else:
            await self.push(status)

    async def _read_command_line(self) -> bytes | None:
        """The next command line without its CRLF; None for one over the stream's limit (read
        to its end and dropped)."""
        try:
            return (await self._reader.readuntil()).rstrip(b"\r\n")
        except asyncio.LimitOverrunError as error:
            await self._reader.read(error.consumed)
        while True:
            try:
                await self._reader.readuntil()
                return None
            except asyncio.LimitOverrunError as error:
                await self._reader.read(error.consumed)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the session's one idle timer forward (aiosmtpd replaces it at every command)."""
        self._idle_until = self.loop.time() + (duration or self._timeout_duration)
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_at(self._idle_until, self._idle_timer)

    def _idle_timer(self) -> None:
        if self.loop.time() < self._idle_until:
            self._timeout_handle = self.loop.call_at(self._idle_until, self._idle_timer)
        else:
            self._timeout_cb()

    async def refuse_for_account(self) -> None:
        await self.push(TOO_MANY_FOR_ACCOUNT)
        if self.transport is not None:  # None once the client hung up
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command hook
        """DATA into a temporary file (memory up to SPOOL_IN_MEMORY, then disk) instead of
        aiosmtpd's list of lines: a session holds one line of a big message, not all of it.

        The same checks and replies as aiosmtpd's own smtp_DATA (aiosmtpd 1.4).
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None  # _handle_client made it before reading commands
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed below
        try:
            problem = await self._receive_data(spool)
            if problem:
                await self.push(problem)
                self._set_post_data_state()
                return
            spool.seek(0)
            # A file, not aiosmtpd's bytes: handle_DATA reads the message from it.
            self.envelope.content = self.envelope.original_content = spool  # type: ignore[assignment]
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)
            if self.login_revoked and self.transport is not None:
                # handle_DATA found the login revoked while the message was on its way: it
                # answered 421 and stored nothing; the session ends here.
                self.transport.close()
        finally:
            spool.close()

    async def _receive_data(self, spool: SpooledTemporaryFile) -> str:
        """Read lines up to the lone dot into ``spool``, dot-unstuffed; a refusal, or ''."""
        size, limit, problem = 0, self.data_size_limit, ""
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # a line over the stream limit
                problem = "500 Line too long (see RFC5321 4.5.3.1.6)"
                await self._reader.read(exc.consumed)
                continue
            if line == b".\r\n":
                return problem
            size += len(line)
            if limit and size > limit and not problem:
                problem = "552 Error: Too much mail data"
            if not problem:
                spool.write(line[1:] if line.startswith(b".") else line)

    def connection_lost(self, error: Exception | None) -> None:
        if self.counted_ip is not None:
            self.counts.leave(self.counts.by_ip, self.counted_ip)
            self.counted_ip = None
        if self.counted_account is not None:
            self.counts.leave(self.counts.by_account, self.counted_account)
            self.counted_account = None
        super().connection_lost(error)


class SubmissionHandler:
    """aiosmtpd hooks: every reply an authenticated client gets comes from the checks here."""

    def __init__(self, hostname: str, group_commit: GroupCommit) -> None:
        self.hostname = hostname
        self.group_commit = group_commit

    def __dir__(self) -> list[str]:
        return _hook_names(type(self))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        # aiosmtpd reads commands one by one from its stream, so pipelined commands just work.
        return [responses[0], "250-PIPELINING", *responses[1:]]

    # --- AUTH -------------------------------------------------------------------------------

    async def auth_PLAIN(self, server: SubmissionSMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except ValueError:
                return _refusal("501 5.5.2 Bad base64 data")
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            return _refusal("501 5.5.2 Bad PLAIN data")
        return await self._authenticate(server, LoginPassword(parts[1], parts[2]))

    async def auth_LOGIN(self, server: SubmissionSMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) == 1:
            login = await server.challenge_auth(server.AuthLoginUsernameChallenge)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                return _refusal("501 5.5.2 Bad base64 data")
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._authenticate(server, LoginPassword(login, password))

    async def _authenticate(self, server: SubmissionSMTP, data: LoginPassword) -> AuthResult:
        try:
            return await self._check_credentials(server, data)
        except DatabaseError:
            # A temporary reply: the client keeps the message and tries again (RFC 4954).
            log.exception("submission AUTH could not use the database")
            return _refusal("454 4.7.0 Temporary authentication failure; try again later")

    async def _check_credentials(self, server: SubmissionSMTP, data: LoginPassword) -> AuthResult:
        ip = _peer_ip(server.session)
        login = data.login.decode("utf-8", "replace")

        def look_up() -> list[AppPassword] | None:
            """The login's app passwords, or None if it is locked: one trip to the thread."""
            if credentials.is_locked(ip, login):
                return None
            return credentials.candidates(login)

        candidates = await in_db(look_up)
        if candidates is None:
            return _refusal("454 4.7.0 Too many failed logins; try again later")
        password = data.password.decode("utf-8", "replace")
        if credentials.slow_to_check(candidates):
            # A hash from an earlier version (PBKDF2) takes a while on purpose; a worker thread
            # keeps other sessions moving.
            match = await asyncio.to_thread(credentials.matching, password, candidates)
        else:
            match = credentials.matching(password, candidates)  # keyed hashes: microseconds
        if match is None:
            failures = await in_db(credentials.record_failure, ip, login)
            await asyncio.sleep(credentials.failure_delay(failures))
            return AuthResult(success=False, handled=False)
        if server.counted_account is None and not server.counts.enter_account(match.account.pk):
            log.warning("submission: too many sessions for %s", match.account.email)
            await server.refuse_for_account()
            return AuthResult(success=False, handled=True)
        server.counted_account = match.account.pk

        def logged_in() -> SenderRules:
            credentials.record_use(match, password)
            # Read now, in the same trip to the database thread: the first MAIL need not wait.
            return _read_sender_rules(match.account)

        server.known_sender_rules = await in_db(logged_in)
        server.login_found_valid()  # the session's first MAIL need not ask again
        log.info("submission AUTH ok for %s from %s", match.account.email, ip)
        return AuthResult(success=True, auth_data=Identity(match.account, login, match.pk))

    # --- the envelope -----------------------------------------------------------------------

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        identity: Identity = session.auth_data
        try:
            rules = await server.sender_rules(identity.account)
            # The account and its domain were read at login: no query here.
            check_domain_verified(identity.account)
            check_sender(identity.account, address, rules.allowed)
            check_daily_limit(identity.account, rules.sent)
        except Refused as refusal:
            return refusal.reply
        except DatabaseError:
            log.exception("submission MAIL from %s not checked", identity.login)
            return "451 4.3.0 Temporary failure; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        try:
            check_recipient(address)
            check_recipient_count(len(envelope.rcpt_tos) + 1)
        except Refused as refusal:
            return refusal.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        identity: Identity = session.auth_data
        tls = server.implicit_tls or session.ssl is not None
        received = (
            f"from {session.host_name} ([{_peer_ip(session)}]) by {self.hostname} "
            f"(Sendgate) with {'ESMTPSA' if tls else 'ESMTPA'}"
        )

        try:
            rules = await server.sender_rules(identity.account)
        except DatabaseError:
            log.exception("submission from %s not stored", identity.login)
            return "451 4.3.0 Could not store the message; try again later"
        sent = rules.sent

        def prepare() -> Pending:
            # The group commit checks the app password afresh first, in the same transaction.
            return submission.prepare(
                identity.account,
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                received,
                allowed=rules.allowed,
                sent=sent,
            )

        started = time.monotonic()
        try:
            outcome = await self.group_commit.store(Submission(identity.app_password_id, prepare))
        except Exception:  # the message or its group's commit failed: it is not stored
            log.exception("submission from %s not stored", identity.login)
            return "451 4.3.0 Could not store the message; try again later"
        if isinstance(outcome, Refused):
            return outcome.reply
        if isinstance(outcome, Exception):
            log.error("submission from %s not stored", identity.login, exc_info=outcome)
            return "451 4.3.0 Could not store the message; try again later"
        if outcome is None:
            server.login_revoked = True
            log.warning("submission from %s refused: login revoked", identity.login)
            return _revoked_reply()
        # The outbox row is committed: only now may the client forget the message.
        rules.sent += 1
        metrics.SUBMIT_SECONDS.observe(time.monotonic() - started)
        return f"250 2.0.0 Queued as {outcome.pk}"


def protocol_factory(
    config: ListenerConfig,
    handler: SubmissionHandler,
    counts: SessionCounts,
    *,
    implicit_tls: bool,
) -> Callable[[], SubmissionSMTP]:
    def make() -> SubmissionSMTP:
        return SubmissionSMTP(
            handler,
            implicit_tls=implicit_tls,
            plaintext_on_loopback=config.plaintext_auth_on_loopback,
            counts=counts,
            hostname=config.hostname,
            ident="Sendgate ESMTP",
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            auth_required=True,
            # With implicit TLS the whole session is encrypted; aiosmtpd only knows STARTTLS.
            tls_context=None if implicit_tls else config.tls_context,
            require_starttls=not implicit_tls,
            auth_require_tls=not implicit_tls,
        )

    return make


async def start_servers(config: ListenerConfig) -> list[asyncio.base_events.Server]:
    """Open the STARTTLS port and, if configured, the implicit-TLS port."""
    loop = asyncio.get_running_loop()
    # One group commit (and one wake-up pace) for every session on both ports.
    handler = SubmissionHandler(config.hostname, GroupCommit(WakeUps()))
    # One count for both ports: a sender cannot double its share by using the other one.
    counts = SessionCounts(config.max_sessions_per_ip, config.max_sessions_per_account)
    servers = [
        await loop.create_server(
            protocol_factory(config, handler, counts, implicit_tls=False),
            config.host,
            config.port,
            reuse_port=config.reuse_port or None,
        )
    ]
    if config.tls_port:
        servers.append(
            await loop.create_server(
                protocol_factory(config, handler, counts, implicit_tls=True),
                config.host,
                config.tls_port,
                ssl=config.tls_context,
                reuse_port=config.reuse_port or None,
            )
        )
    return servers
