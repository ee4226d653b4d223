"""Delivery attempts: claim a batch of messages, route each, send, record what happened.

A batch shares one SMTP connection per server (servers are served concurrently), but every
message keeps its own route, deadline, attempt record and outcome. One message is a batch of one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.errors import MessageError
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from functools import cache
from tempfile import SpooledTemporaryFile
from typing import IO, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.translation import gettext as _

from domainkeys.signing import Signer
from gateways import server_state, tokens
from gateways.models import SendAsAlias, SmtpServer
from mailkit import dns, oauth
from mailkit.logs import event
from mailkit.mta_sts import Mode as StsMode
from mailkit.mta_sts import Policy, PolicyFetcher
from mailkit.smtp import Job, Outcome, Security, Sender, Target, send_many
from mailkit.smtp_pool import worker_loop
from outbox import bodies, notices, rows
from outbox.models import DeliveryAttempt, Message, Rule

from . import claiming, metrics, mta_sts, reports
from .headers import HEADER_END, with_sender
from .routing import Route, RouteKind, route_for

log = logging.getLogger("sendgate.delivery")

# What one delivery to one server did for some of a message's recipients.
Results = list[tuple[str, list[str], Outcome]]

SETTLED_FIELDS = [
    "state",
    "last_route",
    "last_reply",
    "lease_until",
    "next_attempt_at",
    "sent_at",
    "pending_recipients",
    "failed_recipients",
    "delay_warned_at",
    "attempt_count",
]


def _claimable(now: datetime) -> Q:
    return _due(now) | _stale(now)


def _due(now: datetime) -> Q:
    return Q(state__in=[Message.State.QUEUED, Message.State.DEFERRED], next_attempt_at__lte=now)


def _stale(now: datetime) -> Q:
    return Q(state=Message.State.SENDING, lease_until__lt=now)  # its worker died


@dataclass
class Claim:
    ids: list[int]
    interrupted: set[int]  # taken back from a worker that stopped before recording an outcome
    # The claimed messages as deliver_claimed loads them, when the claim returned them already.
    messages: list[Message] | None = None


def claim(message_ids: list[int]) -> Claim:
    """Take the due messages among ``message_ids`` for this worker; no two workers get the same.

    PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED. SQLite ignores row locks, but its IMMEDIATE
    transactions take the write lock at BEGIN, so select-then-update cannot interleave there.
    """
    now = timezone.now()
    with transaction.atomic():
        due = Message.objects.filter(_claimable(now), pk__in=message_ids)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values_list("pk", "state"))
        claimed = [pk for pk, _state in rows]
        Message.objects.filter(pk__in=claimed).update(
            state=Message.State.SENDING,
            lease_until=now + timedelta(seconds=settings.SENDGATE_CLAIM_LEASE_SECONDS),
            attempt_count=F("attempt_count") + 1,
        )
    return Claim(claimed, {pk for pk, state in rows if state == Message.State.SENDING})


def claim_due(limit: int) -> Claim:
    """Take up to ``limit`` due messages, oldest due first, for this worker (a coalesced wake-up).

    Concurrent workers split the work: on PostgreSQL each skips the rows another is claiming;
    on SQLite the IMMEDIATE transaction serialises them. Messages taken back from a dead worker
    are left to the sweeper, which sends each of them alone.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.SENDGATE_CLAIM_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        # One statement claims and loads (the separate queries were most of a small batch's cost).
        messages = claiming.claim_due(limit, now, lease_until)
        return Claim([m.pk for m in messages], set(), messages)
    with transaction.atomic():
        due = Message.objects.filter(_due(now)).order_by("next_attempt_at")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = list(due.values_list("pk", flat=True)[:limit])
        Message.objects.filter(pk__in=claimed).update(
            state=Message.State.SENDING,
            lease_until=lease_until,
            attempt_count=F("attempt_count") + 1,
        )
    return Claim(claimed, set())


def routes_for(messages: list[Message]) -> dict[int, Route]:
    """The route of each message, with one query for all the aliases involved.

    Passwords and sign-in tokens are not loaded here: one unreadable secret must not stop the
    whole batch, so it is decrypted later, per server (see ``_target``).
    """
    if not messages:
        return {}
    aliases = {
        (a.account_id, a.address): a
        for a in _aliases({m.account_id for m in messages}, {m.from_address for m in messages})
    }
    return {
        m.pk: route_for(
            m.account,
            m.from_address,
            aliases.get((m.account_id, m.from_address)),
            automatic=m.kind == Message.Kind.REPORT,
        )
        for m in messages
    }


# Read only when a message goes through the server (see _target).
SERVER_SECRETS = ["password", "oauth_refresh_token", "oauth_access_token"]


@cache
def _alias_query() -> tuple[str, rows.Columns, rows.Columns]:
    """The alias query's SQL (with ``{accounts}`` and ``{addresses}`` left to fill in) and its
    columns: the alias's, then its server's but the secrets."""
    alias = rows.Columns(SendAsAlias, "alias")
    server = rows.Columns(SmtpServer, "server", leave_out=SERVER_SECRETS)
    sql = (
        f"SELECT {alias.sql()}, {server.sql()} FROM {rows.table(SendAsAlias)} alias"  # noqa: S608 - names from the models
        f" LEFT JOIN {rows.table(SmtpServer)} server"
        f" ON server.{rows.quote('id')} = alias.{rows.column(SendAsAlias, 'smtp_server')}"
        f" WHERE alias.{rows.column(SendAsAlias, 'account')} IN ({{accounts}})"
        f" AND alias.{rows.column(SendAsAlias, 'address')} IN ({{addresses}})"
    )
    return sql, alias, server


def _aliases(account_ids: set[int], addresses: set[str]) -> list[SendAsAlias]:
    """The aliases of ``account_ids`` among ``addresses``, each with its server but not the
    server's secrets: SendAsAlias.objects.select_related("smtp_server").defer(secrets), in SQL
    that is not compiled again at every batch (outbox.rows)."""
    sql, alias, server = _alias_query()
    accounts, wanted = list(account_ids), list(addresses)
    sql = sql.format(accounts=rows.placeholders(accounts), addresses=rows.placeholders(wanted))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*accounts, *wanted])
        found = cursor.fetchall()
    aliases = []
    for row in found:
        loaded = cast(SendAsAlias, alias.build(row[: alias.width]))
        server_row = row[alias.width :]
        rows.cache_related(
            loaded, "smtp_server", server.build(server_row) if server_row[0] is not None else None
        )
        aliases.append(loaded)
    return aliases


def deliver(
    message_id: int,
    resolver: dns.Resolver | None = None,
    policy_fetcher: PolicyFetcher | None = None,
) -> None:
    deliver_batch([message_id], resolver, policy_fetcher)


# Messages each server gets per round. A round's outcomes are saved while the next round is
# sent, so a worker killed mid-batch can have sent at most two rounds per server without a
# record (they are sent again).
ROUND_SIZE = 5
UNRECORDED_AT_MOST = 2 * ROUND_SIZE
# A round also stops taking messages past this many bytes of bodies (but always takes one): a
# worker holds only the bodies of the round it is sending and of the next one, never the whole
# batch's.
ROUND_BYTES = 16 * 1024 * 1024


class InternalError(Outcome):
    """Sendgate itself failed on this message (not the peer): an unreadable password, a bug."""


def _internal_error(exc: BaseException) -> InternalError:
    return InternalError(
        ok=False,
        error=_("Sendgate could not handle this message: %(error)s")
        % {"error": f"{type(exc).__name__}: {exc}"},
        # Retrying cannot help a message whose own bytes cannot be read.
        permanent=isinstance(exc, UnicodeError | MessageError),
    )


def _interrupted() -> InternalError:
    return InternalError(
        ok=False,
        error=_(
            "The delivery worker stopped before it recorded an outcome (killed, out of memory "
            "or out of time)."
        ),
    )


@dataclass
class Batch:
    """One worker's claimed messages, their routes, and its time budget."""

    messages: list[Message]
    routes: dict[int, Route]
    budget_ends: float  # time.monotonic(): no message starts after this
    # OAuth servers dialled with an access token from the cache (not renewed just now): if one
    # is refused, it is renewed and the mail tried again at once before the server is paused.
    cached_tokens: set[int] = field(default_factory=set)

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.budget_ends


def deliver_batch(
    message_ids: list[int],
    resolver: dns.Resolver | None = None,
    policy_fetcher: PolicyFetcher | None = None,
) -> None:
    """Make one attempt for each due message no other worker has; safe to call twice.

    Each message is on its own: whatever goes wrong with one of them is recorded on it as an
    attempt, and the others go on.
    """
    deliver_claimed(claim(message_ids), resolver, policy_fetcher)


def deliver_claimed(
    taken: Claim,
    resolver: dns.Resolver | None = None,
    policy_fetcher: PolicyFetcher | None = None,
    budget_ends: float | None = None,
) -> None:
    """Deliver the messages of ``taken`` (see deliver_batch); none starts after ``budget_ends``
    (time.monotonic()) or SENDGATE_BATCH_SECONDS from now, whichever comes first."""
    if not taken.ids:
        return
    messages = taken.messages if taken.messages is not None else _claimed_messages(taken.ids)
    ends = time.monotonic() + settings.SENDGATE_BATCH_SECONDS
    batch = Batch(messages, {}, ends if budget_ends is None else min(ends, budget_ends))
    messages = _route_each(batch)
    messages = _note_interruptions(batch, messages, taken.interrupted)
    by_target, direct = _sort_by_path(batch, messages)
    signer = Signer()  # each domain's DKIM keys are read once per batch
    for message in direct:
        if batch.out_of_time():
            _release([message.pk])  # out of time: the next batch takes it
        else:
            _record_isolated(
                message,
                batch.routes,
                lambda m=message: _send_direct_now(m, batch, signer, resolver, policy_fetcher),
            )
    if by_target:
        _send_through_servers(by_target, batch, signer)


def _claimed_messages(message_ids: list[int]) -> list[Message]:
    """The messages by id, with what delivery reads of their account and domain, and the size
    of their bodies (``raw_size``); a message deleted meanwhile is simply not there."""
    return list(
        Message.objects.select_related("account__domain")
        .defer("raw")  # bodies are read round by round (see _next_round)
        .annotate(raw_size=Length("raw"))
        .filter(pk__in=message_ids)
        .order_by("pk")
    )


def _route_each(batch: Batch) -> list[Message]:
    """Route every message; one the routing cannot handle gets an attempt with the error."""
    try:
        batch.routes.update(routes_for(batch.messages))
        return batch.messages
    except Exception:  # noqa: BLE001 - find the message(s) at fault, one by one
        routed = []
        for message in batch.messages:
            try:
                batch.routes.update(routes_for([message]))
                routed.append(message)
            except Exception as exc:  # noqa: BLE001
                _record_unroutable(message, batch.routes, exc)
        return routed


def _note_interruptions(
    batch: Batch, messages: list[Message], interrupted: set[int]
) -> list[Message]:
    """Record that a worker stopped mid-way on these messages; give up on one that keeps doing it.

    The sweeper hands such messages out one per task, so a message that kills its worker (too
    big, a bug) takes down only its own attempts, and after SENDGATE_SAME_ERROR_LIMIT of them it
    fails with a report instead of looping.
    """
    going_on = []
    for message in messages:
        if message.pk not in interrupted:
            going_on.append(message)
            continue
        outcome = _interrupted()
        if _repeats(message, outcome.error) + 1 >= settings.SENDGATE_SAME_ERROR_LIMIT:
            _record_isolated(
                message, batch.routes, lambda m=message, o=outcome: _everyone(m, "", o)
            )
        else:
            _attempt(message, batch.routes[message.pk], "", outcome).save()
            going_on.append(message)
    return going_on


def _sort_by_path(
    batch: Batch, messages: list[Message]
) -> tuple[dict[Target, list[Message]], list[Message]]:
    """Record held mail; group gateway mail by server connection; list direct-MX mail."""
    direct: list[Message] = []
    by_server: dict[int, list[Message]] = defaultdict(list)
    # Only a held message's notice depends on how its server signs in: no query without one.
    signed_in = _signed_in(
        {batch.routes[m.pk].server_id for m in messages if batch.routes[m.pk].hold}
    )
    for message in messages:
        route = batch.routes[message.pk]
        if route.hold:
            held = _held(message, route.server_id in signed_in)
            _record_isolated(message, batch.routes, lambda m=message, o=held: _everyone(m, "", o))
        elif route.kind == RouteKind.DIRECT_MX:
            direct.append(message)
        else:
            assert route.server_id is not None  # routing names the server of a gateway route
            by_server[route.server_id].append(message)
    by_target: dict[Target, list[Message]] = defaultdict(list)
    servers = _servers(list(by_server))
    for server_id, server_messages in by_server.items():
        target = _target(servers[server_id], batch.cached_tokens)
        if isinstance(target, tuple):  # its password cannot be decrypted, no sign-in token, ...
            label, failure = target
            for message in server_messages:
                _record_isolated(
                    message,
                    batch.routes,
                    lambda m=message, lb=label, o=failure: _everyone(m, lb, o),
                )
        else:
            # Same host, port, security and credentials: one connection, whoever's alias it is.
            by_target[target].extend(server_messages)
    return by_target, direct


def _signed_in(server_ids: set[int | None]) -> set[int]:
    """Those of ``server_ids`` that sign in with OAuth instead of a password."""
    ids = {pk for pk in server_ids if pk is not None}
    if not ids:
        return set()
    signing_in = SmtpServer.objects.filter(pk__in=ids).exclude(oauth_provider="")
    return set(signing_in.values_list("pk", flat=True))


def _servers(server_ids: list[int]) -> dict[int, SmtpServer | Exception]:
    """The servers, in one query; if one of them cannot be loaded (its password cannot be
    decrypted), each is loaded on its own, so that only its own mail gets the error."""
    if not server_ids:
        return {}
    try:
        found = rows.select(
            _server_columns(),
            f"server.{rows.quote('id')} IN ({rows.placeholders(server_ids)})",
            server_ids,
        )
        servers = {server.pk: cast(SmtpServer, server) for server in found}
        return {pk: servers.get(pk) or SmtpServer.DoesNotExist(pk) for pk in server_ids}
    except Exception:  # noqa: BLE001 - narrowed down below
        loaded: dict[int, SmtpServer | Exception] = {}
        for pk in server_ids:
            try:
                loaded[pk] = SmtpServer.objects.get(pk=pk)
            except Exception as exc:  # noqa: BLE001 - recorded on every message for it
                loaded[pk] = exc
        return loaded


@cache
def _server_columns() -> rows.Columns:
    return rows.Columns(SmtpServer, "server")


def _target(
    server: SmtpServer | Exception, cached_tokens: set[int]
) -> Target | tuple[str, Outcome]:
    """The server's dial parameters (with a usable access token for a server signed in with
    OAuth), or the error that stops anyone using it now (with the label to record it under).
    Adds an OAuth server dialled with a token from the cache to ``cached_tokens``."""
    if isinstance(server, Exception):
        return "", _internal_error(server)
    try:
        target, renewed = tokens.dial_target(server)
    except oauth.TokenError as exc:
        # No token, no session: a revoked sign-in (invalid_grant) pauses the gateway like a
        # refused password; an unreachable token endpoint is a temporary failure.
        return server.target().label, Outcome(ok=False, error=exc.message, auth_failed=exc.revoked)
    except Exception as exc:  # noqa: BLE001 - recorded on every message for this server
        return "", _internal_error(exc)
    if server.uses_oauth and not renewed:
        cached_tokens.add(server.pk)
    return target


def _everyone(message: Message, label: str, outcome: Outcome) -> Results:
    return [(label, list(message.pending_recipients), outcome)]


def _record_unroutable(message: Message, routes: dict[int, Route], exc: Exception) -> None:
    routes[message.pk] = Route(
        # Unknown this time; the attempt needs a value: the last route (maybe "") and no rule.
        kind=cast(RouteKind, message.last_route),
        rule=cast(Rule, ""),
        envelope_from=message.from_address,
        sender_header=None,
        server_id=None,
        policy_version=message.account.policy_version,
    )
    _record([(message, _everyone(message, "", _internal_error(exc)))], routes)


def _repeats(message: Message, reply: str) -> int:
    """How many of the message's latest attempts in a row ended with exactly ``reply``."""
    latest = message.attempts.order_by("-id").values_list("reply", flat=True)
    count = 0
    for previous in latest[: settings.SENDGATE_SAME_ERROR_LIMIT]:
        if previous != reply:
            break
        count += 1
    return count


def _give_up_on_repeats(message: Message, results: Results) -> Results:
    """An internal error that repeats SENDGATE_SAME_ERROR_LIMIT times in a row is final.

    Returns new outcomes: one error (a server's unreadable password) may be shared by messages.
    """
    final = []
    for label, recipients, outcome in results:
        if (
            isinstance(outcome, InternalError)
            and not outcome.permanent
            and _repeats(message, outcome.error) + 1 >= settings.SENDGATE_SAME_ERROR_LIMIT
        ):
            giving_up = _("(The same error %(count)s times in a row: giving up.)") % {
                "count": settings.SENDGATE_SAME_ERROR_LIMIT
            }
            outcome = replace(outcome, permanent=True, error=f"{outcome.error} {giving_up}")
        final.append((label, recipients, outcome))
    return final


def _record_isolated(message: Message, routes: dict[int, Route], results) -> None:
    """Work out ``results()`` for one message and record it; any exception becomes its outcome."""
    try:
        done = [(message, results())]
    except Exception as exc:  # noqa: BLE001 - recorded on this message; the batch goes on
        done = [(message, _everyone(message, "", _internal_error(exc)))]
    _record(done, routes)


# The messages of a round, and each one's SMTP job, by server.
Round = dict[Target, list[tuple[Message, Job]]]


def _send_through_servers(
    by_target: dict[Target, list[Message]], batch: Batch, signer: Signer
) -> None:
    """One connection per server, all servers at once, in rounds of ROUND_SIZE per server.

    The process's event loop runs in its own thread (mailkit.smtp_pool); this thread saves a
    round's outcomes with the ORM while the next round is on the wire (and reads and prepares
    the round after it meanwhile), so neither the database nor the peers wait for the other. A
    server's next round starts only once its last one is done: one session per server. The batch
    starts no new message after SENDGATE_BATCH_SECONDS (well inside the task's time limit); what
    it did not start is handed back.
    """
    pool = worker_loop.pool
    senders = {target: Sender(target, pool=pool) for target in by_target}
    queues = {target: list(messages) for target, messages in by_target.items()}
    # The batch's one time budget, on the loop's clock.
    stop_at = worker_loop.time() + (batch.budget_ends - time.monotonic())

    def start(this_round: Round) -> concurrent.futures.Future[list]:
        async def together() -> list:
            return await asyncio.gather(
                *(
                    senders[t].send([job for _m, job in jobs], stop_at)
                    for t, jobs in this_round.items()
                )
            )

        return worker_loop.start(together())

    on_the_wire: concurrent.futures.Future[list] | None = None
    try:
        sending = _prepare_round(queues, batch.routes, signer)
        on_the_wire = start(sending) if sending else None
        while on_the_wire is not None:
            following = _prepare_round(queues, batch.routes, signer)
            outcomes = worker_loop.wait(on_the_wire)
            on_the_wire = start(following) if following else None
            _save_round(sending, outcomes, batch)
            sending = following
    finally:
        if on_the_wire is not None:  # interrupted: that round's messages come back with the lease
            on_the_wire.cancel()
        # Connections stay open for the next task to the same server (mailkit.smtp_pool).
        worker_loop.run(_finish(senders.values()))


async def _finish(senders: Iterable[Sender]) -> None:
    await asyncio.gather(*(sender.finish() for sender in senders))


def _prepare_round(
    queues: dict[Target, list[Message]], routes: dict[int, Route], signer: Signer
) -> Round:
    """The next round's jobs (its bodies read), or nothing once ``queues`` are empty."""
    while any(queues.values()):
        this_round: Round = {}
        for target, taken in _next_round(queues).items():
            jobs = _jobs(taken, routes, target, signer)
            if jobs:
                this_round[target] = jobs
        if this_round:
            return this_round
    return {}


def _save_round(this_round: Round, outcomes: list, batch: Batch) -> None:
    """Record the outcomes of a round that is done; hand back what it did not start."""
    done, not_started = [], []
    for (target, jobs), sent in zip(this_round.items(), outcomes, strict=True):
        for (message, _job), outcome in zip(jobs, sent, strict=True):
            if outcome is None:
                not_started.append(message.pk)
            else:
                done.append((message, _everyone(message, target.label, outcome)))
    _close_bodies(this_round)
    _record(done, batch.routes, batch.cached_tokens)
    if not_started:
        _release(not_started)


# A body larger than this goes to a temporary file, not memory, on its way to the socket.
IN_MEMORY_BODY = 1024 * 1024
# The header is looked for within this many bytes (then sent as it is).
MAX_HEADER = 4 * 1024 * 1024


def body_file(
    message_id: int, route: Route, signer: Signer | None = None, raw: bytes | None = None
) -> SpooledTemporaryFile[bytes]:
    """The message as it leaves by ``route`` (its Sender: header set, then DKIM-signed on the
    domain path), copied from its row a chunk at a time into a temporary file: memory stays flat
    whatever the message's size (except while a message is signed, see _signed). A small
    message's bytes read already (``raw``) are used as they are."""
    sender_header = route.sender_header
    out = SpooledTemporaryFile(max_size=IN_MEMORY_BODY)  # noqa: SIM115 - closed after its round
    head = b""
    pieces = iter([raw]) if raw is not None else bodies.chunks(message_id)
    for piece in pieces:
        head += piece
        if HEADER_END.search(head) or len(head) > MAX_HEADER:
            break
    out.write(with_sender(head, sender_header))
    for piece in pieces:
        out.write(piece)
    out.seek(0)
    return _signed(out, route, signer)


def _signed(out: SpooledTemporaryFile, route: Route, signer: Signer | None) -> SpooledTemporaryFile:
    """``out`` with the route's DKIM signatures on top. Signing needs the whole message at once
    (dkimpy), so a signed message is in memory once, briefly; a per-user gateway's mail is never
    signed by Sendgate (the partner's server signs what it sends)."""
    if (
        signer is None
        or route.kind == RouteKind.USER_GATEWAY
        or not route.dkim_domain
        or not signer.keys_for(route.dkim_domain)
    ):
        return out
    with out:
        data = out.read()
    signed = SpooledTemporaryFile(max_size=IN_MEMORY_BODY)  # noqa: SIM115 - closed by the caller
    signed.write(signer.sign(data, route.dkim_domain))
    signed.seek(0)
    return signed


def _close_bodies(this_round: Round) -> None:
    for jobs in this_round.values():
        for _message, (_sender, _recipients, data) in jobs:
            if data is not None and not isinstance(data, bytes):  # always a body_file() here
                data.close()


def _next_round(queues: dict[Target, list[Message]]) -> dict[Target, list[Message]]:
    """Take up to ROUND_SIZE messages per server off ``queues``, within ROUND_BYTES in all."""
    taken: dict[Target, list[Message]] = {}
    size = 0
    for target, queue in queues.items():
        while queue and len(taken.get(target, ())) < ROUND_SIZE:
            # raw_size: annotated by deliver()'s query, which the stubs cannot follow here.
            if size and size + queue[0].raw_size > ROUND_BYTES:  # type: ignore[attr-defined]
                return taken
            message = queue.pop(0)
            size += message.raw_size  # type: ignore[attr-defined]
            taken.setdefault(target, []).append(message)
    return taken


def _jobs(
    messages: list[Message], routes: dict[int, Route], target: Target, signer: Signer
) -> list[tuple[Message, Job]]:
    """The SMTP job of each message; one that cannot be prepared is recorded and left out."""
    jobs: list[tuple[Message, Job]] = []
    try:
        # Small bodies in one query; a big one is read a chunk at a time by body_file.
        small = bodies.whole([m.pk for m in messages if m.raw_size <= IN_MEMORY_BODY])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - each message is read (and fails) on its own below
        small = {}
    for message in messages:
        route = routes[message.pk]
        try:
            data = body_file(message.pk, route, signer, small.get(message.pk))
        except Exception as exc:  # noqa: BLE001 - recorded on this message; the round goes on
            _record([(message, _everyone(message, target.label, _internal_error(exc)))], routes)
            continue
        jobs.append((message, (route.envelope_from, list(message.pending_recipients), data)))
    return jobs


def _record(
    done: list[tuple[Message, Results]],
    routes: dict[int, Route],
    cached_tokens: set[int] | frozenset[int] = frozenset(),
) -> None:
    """Save attempts and outcomes of finished messages, with any reports, in one transaction.

    If saving them together fails, each is saved on its own, so one bad message cannot lose the
    others' outcomes; one that still cannot be saved gets a plain attempt with the error.
    """
    if not done:
        return
    try:
        _save_outcomes(done, routes, cached_tokens)
    except Exception as exc:  # noqa: BLE001 - narrowed down below
        if len(done) > 1:
            for one in done:
                _record([one], routes, cached_tokens)
        else:
            _save_failure_plainly(done[0][0], routes, exc)


def _save_failure_plainly(message: Message, routes: dict[int, Route], exc: Exception) -> None:
    """The last resort: an attempt that says why its outcome could not be saved, and a retry."""
    try:
        message.refresh_from_db()
        _save_outcomes([(message, _everyone(message, "", _internal_error(exc)))], routes)
    except Exception:  # the database itself is failing: the lease brings the message back
        log.exception("could not record the outcome of message %s", message.pk)


def _save_outcomes(
    done: list[tuple[Message, Results]],
    routes: dict[int, Route],
    cached_tokens: set[int] | frozenset[int] = frozenset(),
) -> None:
    """A user gateway that refused its credentials is paused, unless it refused an OAuth access
    token from the cache: that token is dropped and the message is due again at once, so the
    next attempt signs in with a renewed one (a renewed token refused pauses the gateway)."""
    done = [(message, _give_up_on_repeats(message, results)) for message, results in done]
    retry_with_new_token = {
        message.pk
        for message, results in done
        if routes[message.pk].server_id in cached_tokens
        and any(o.auth_failed for _l, _r, o in results)
    }
    attempts = [
        (_attempt(message, routes[message.pk], label, outcome), outcome.seconds)
        for message, results in done
        for label, _rcpts, outcome in results
        if label or isinstance(outcome, InternalError)  # a held message made no attempt
    ]
    with transaction.atomic():  # a report exists if and only if the outcome it reports was saved
        _insert_attempts([attempt for attempt, _seconds in attempts])
        due_reports = [_settle(m, routes[m.pk], results) for m, results in done]
        for message, _results in done:
            if message.pk in retry_with_new_token and message.state == Message.State.DEFERRED:
                message.next_attempt_at = timezone.now()
        _save_settled([m for m, _results in done])
        for (message, _results), notice in zip(done, due_reports, strict=True):
            if notice is not None:
                notices.send_to_sender(message.account, notice)
        for message, results in done:
            route = routes[message.pk]
            failed_auth = [o for _l, _r, o in results if o.auth_failed]
            if route.kind == RouteKind.USER_GATEWAY and failed_auth and route.server_id:
                if message.pk in retry_with_new_token:
                    tokens.expire_access_token(route.server_id)
                else:
                    _pause_gateway(route.server_id, message, failed_auth[0].error)
    for attempt, seconds in attempts:
        _observe(attempt, seconds)


_REPLY_CODE = re.compile(r"\b([245]\d\d)\b")


def _observe(attempt: DeliveryAttempt, seconds: float) -> None:
    """One log line and the metrics for a saved attempt: never the body, never a credential."""
    code = _REPLY_CODE.search(attempt.reply)
    event(
        log,
        "delivery.attempt",
        message_pk=attempt.message_id,
        route=attempt.route,
        rule=attempt.rule,
        server=attempt.server,
        outcome=attempt.outcome,
        code=code.group(1) if code else "",
        seconds=round(seconds, 3),
    )
    metrics.DELIVERY_ATTEMPTS.labels(attempt.route, attempt.outcome).inc()
    metrics.DELIVERY_SECONDS.labels(attempt.route).observe(seconds)


def _release(message_ids: list[int]) -> None:
    """Hand back claimed messages that were not attempted: due again at once, no attempt used."""
    Message.objects.filter(pk__in=message_ids, state=Message.State.SENDING).update(
        state=Message.State.QUEUED, lease_until=None, attempt_count=F("attempt_count") - 1
    )


def _insert_attempts(attempts: list[DeliveryAttempt]) -> None:
    """Insert the attempts as bulk_create would, with SQL built once per process (bulk_create's
    compiling cost more CPU than the insert); nothing reads their ids, so none are returned."""
    insert = rows.inserting(DeliveryAttempt)
    # One statement per chunk (executemany costs a pipeline per call with psycopg 3), chunks
    # within the database's limit on parameters, as bulk_create would.
    for start in range(0, len(attempts), insert.max_rows):
        chunk = attempts[start : start + insert.max_rows]
        rows.execute(insert.sql(len(chunk)), insert.values(chunk))


def _save_settled(messages: list[Message]) -> None:
    """Write the settled fields of every message, one statement for a database's worth of rows.

    Django's bulk_update builds a CASE expression per field per row: measured here it took more
    than half of a batch's time. ``rows.Update`` prepares each value as its field would.
    """
    update = rows.updating(Message, tuple(SETTLED_FIELDS))
    for start in range(0, len(messages), update.max_rows):
        chunk = messages[start : start + update.max_rows]
        rows.execute(update.sql(len(chunk)), update.values(chunk))


def _held(message: Message, signed_in: bool) -> Outcome:
    if signed_in:
        error = _(
            "Waiting: your SMTP server for %(address)s is paused because its sign-in stopped "
            "working. Sign in again to resume."
        )
    else:
        error = _(
            "Waiting: your SMTP server for %(address)s is paused because it refused the "
            "password. Update the password to resume."
        )
    return Outcome(ok=False, error=error % {"address": message.from_address})


def _send_direct_now(
    message: Message,
    batch: Batch,
    signer: Signer,
    resolver: dns.Resolver | None,
    fetcher: PolicyFetcher | None,
) -> Results:
    route = batch.routes[message.pk]
    # MTA-STS policies come from the database cache (or one HTTPS fetch): before the event loop.
    domains = {rcpt.rsplit("@", 1)[1].lower() for rcpt in message.pending_recipients}
    policies = {domain: mta_sts.policy_for(domain, resolver, fetcher) for domain in domains}
    with body_file(message.pk, route, signer) as data:
        return asyncio.run(_send_direct(route, message, data, resolver, policies))


async def _send_direct(
    route: Route,
    message: Message,
    data: IO[bytes],
    resolver: dns.Resolver | None,
    policies: dict[str, Policy | None],
) -> Results:
    """Deliver to each recipient domain's MX hosts in preference order (under its MTA-STS policy
    when it has one), all of it within one SENDGATE_SMTP_DEADLINE: DNS, every domain and every
    host share the message's one deadline."""
    deadline = settings.SENDGATE_SMTP_DEADLINE
    stop_at = asyncio.get_running_loop().time() + deadline
    by_domain: dict[str, list[str]] = defaultdict(list)
    for rcpt in message.pending_recipients:
        by_domain[rcpt.rsplit("@", 1)[1].lower()].append(rcpt)
    sender_domain = message.account.domain
    security = (
        Security.STARTTLS
        if sender_domain and sender_domain.require_tls_direct
        else Security.OPPORTUNISTIC
    )
    out_of_time = Outcome(
        ok=False,
        error=_("Delivery did not finish within %(seconds)s seconds.")
        % {"seconds": f"{deadline:g}"},
    )
    results: Results = []
    for domain, group in by_domain.items():
        left = stop_at - asyncio.get_running_loop().time()
        if left <= 0:
            results.append((domain, group, out_of_time))
            continue
        try:
            hosts = dns.mx_hosts(domain, resolver, lifetime=min(left, DNS_LIFETIME))
        except LookupError as exc:
            results.append((domain, group, Outcome(ok=False, error=str(exc), permanent=True)))
            continue
        except TimeoutError as exc:
            results.append((domain, group, Outcome(ok=False, error=str(exc))))
            continue
        mx = _MxJob(domain, security, policies.get(domain), route.envelope_from, group, data)
        label, outcome = await _try_hosts(mx, hosts, stop_at, out_of_time)
        results.append((label, group, outcome))
    return results


# An MX lookup gets at most this many seconds (and never more than the message has left).
DNS_LIFETIME = 10.0


@dataclass(frozen=True)
class _MxJob:
    """One recipient domain's share of a message, and how its MX hosts may be reached."""

    domain: str
    security: Security  # the sender's domain's own rule: opportunistic or required STARTTLS
    policy: Policy | None  # the recipient domain's MTA-STS policy, if it publishes one
    envelope_from: str
    recipients: list[str]
    data: IO[bytes]


async def _try_hosts(
    mx: _MxJob, hosts: list[str], stop_at: float, out_of_time: Outcome
) -> tuple[str, Outcome]:
    """Try ``hosts`` in turn until one delivers or refuses for good, or the deadline passes.

    MTA-STS ``enforce``: only hosts the policy names, only over STARTTLS with a certificate valid
    for the host's name; anything else waits and retries, never in plaintext. ``testing``: the
    same check is made and its failure logged, but the message goes as it would without a policy.
    """
    loop = asyncio.get_running_loop()
    mode = mx.policy.mode if mx.policy else StsMode.NONE
    if mode is StsMode.ENFORCE:
        assert mx.policy is not None  # the mode is the policy's
        named = [h for h in hosts if mx.policy.matches(h)]
        if not named:
            error = _(
                "MTA-STS enforce: none of the mail servers of %(domain)s (%(hosts)s) is named in "
                "its policy (%(mx)s); the message waits rather than go to an unlisted server."
            ) % {"domain": mx.domain, "hosts": ", ".join(hosts), "mx": ", ".join(mx.policy.mx)}
            return mx.domain, Outcome(ok=False, error=error, note=error)
        hosts = named

    async def attempt(host: str, how: Security) -> tuple[str, Outcome]:
        target = Target(host=host, port=settings.SENDGATE_DIRECT_MX_PORT, security=how)
        job = (mx.envelope_from, mx.recipients, mx.data)
        [outcome] = await send_many(target, [job], finish_by=stop_at)
        assert outcome is not None  # there is no stop_at: every job gets an outcome
        return target.label, outcome

    label, outcome = hosts[0], Outcome(ok=False, error=_("No mail exchanger answered."))
    for host in hosts:
        if stop_at - loop.time() <= 0:
            return label, out_of_time if label == hosts[0] else outcome
        names = {"host": host}
        if mode is StsMode.ENFORCE:
            label, outcome = await attempt(host, Security.STARTTLS)
            if outcome.tls:
                outcome.note = _("MTA-STS enforce: certificate valid for %(host)s") % names
            elif outcome.tls_failed:
                outcome.note = (
                    _("MTA-STS enforce: no verified TLS with %(host)s, nothing sent") % names
                )
            else:
                outcome.note = _("MTA-STS enforce: %(host)s could not be reached") % names
        elif mode is StsMode.TESTING and mx.policy and not mx.policy.matches(host):
            log.warning("MTA-STS testing: %s is not named in the policy of %s", host, mx.domain)
            label, outcome = await attempt(host, mx.security)
            outcome.note = (
                _("MTA-STS testing: %(host)s is not named in the policy; sent as without one")
                % names
            )
        elif mode is StsMode.TESTING:
            label, outcome = await attempt(host, Security.STARTTLS)
            if outcome.tls:
                outcome.note = _("MTA-STS testing: certificate valid for %(host)s") % names
            elif not outcome.tls_failed:
                outcome.note = _("MTA-STS testing: %(host)s could not be reached") % names
            elif mx.security is Security.STARTTLS:
                # The sender's own domain requires verified TLS: no second try without it.
                outcome.note = (
                    _("MTA-STS testing: no verified TLS with %(host)s, nothing sent") % names
                )
            else:
                log.warning("MTA-STS testing: %s: %s", host, outcome.error)
                failure = outcome.error
                label, outcome = await attempt(host, mx.security)
                outcome.note = _(
                    "MTA-STS testing: verified TLS with %(host)s failed (%(error)s); sent as "
                    "without a policy"
                ) % (names | {"error": failure})
        else:
            label, outcome = await attempt(host, mx.security)
        if outcome.ok or outcome.permanent:
            break
    return label, outcome


def _attempt(message: Message, route: Route, server: str, outcome: Outcome) -> DeliveryAttempt:
    if outcome.ok:
        result = DeliveryAttempt.Outcome.SENT
    elif outcome.permanent:
        result = DeliveryAttempt.Outcome.FAILED
    else:
        result = DeliveryAttempt.Outcome.DEFERRED
    reply = outcome.reply if outcome.ok else outcome.error
    if outcome.refused:
        reply += "\n" + "\n".join(f"{r}: {text}" for r, text in outcome.refused.items())
    return DeliveryAttempt(
        message=message,
        finished_at=timezone.now(),
        route=route.kind,
        rule=route.rule,
        policy_version=route.policy_version,
        server=server,
        envelope_from=route.envelope_from,
        outcome=result,
        reply=reply,
        tls_policy=outcome.note,
    )


def _pause_gateway(server_id: int, message: Message, reason: str) -> None:
    """Stop using a user's gateway that refused its credentials, and tell its owner once."""
    signed_in = bool(_signed_in({server_id}))
    server_state.pause(
        server_id, reason, message.account, message.from_address, signed_in=signed_in
    )


@dataclass
class _Tally:
    pending: list[str]
    failed: dict[str, str]
    last_reply: str


def _tally(message: Message, results: Results) -> _Tally:
    """Take delivered (2xx) and refused (5xx) recipients off the pending list."""
    tally = _Tally(list(message.pending_recipients), dict(message.failed_recipients), "")
    for _server, recipients, outcome in results:
        tally.last_reply = outcome.reply if outcome.ok else outcome.error
        for rcpt in recipients:
            refusal = outcome.refused.get(rcpt)
            if outcome.ok and refusal is None:
                tally.pending.remove(rcpt)
            elif outcome.permanent or (refusal is not None and refusal.startswith("5")):
                tally.failed[rcpt] = refusal or outcome.error
                tally.pending.remove(rcpt)
            elif refusal is not None:
                tally.last_reply = refusal
    return tally


def _settle(
    message: Message, route: Route, results: Results
) -> EmailMessage | MIMEMultipart | None:
    """Set the message's next state in memory; return the report its sender should get, if any."""
    tally = _tally(message, results)
    now = timezone.now()
    if tally.pending and now - message.created_at > timedelta(
        days=settings.SENDGATE_MAX_QUEUE_DAYS
    ):
        for rcpt in tally.pending:
            tally.failed[rcpt] = _("Gave up after %(days)s days: %(reply)s") % {
                "days": f"{settings.SENDGATE_MAX_QUEUE_DAYS:g}",
                "reply": tally.last_reply,
            }
        tally.pending = []
    message.pending_recipients = tally.pending
    message.failed_recipients = tally.failed
    warn_delay = False
    if not tally.pending and len(tally.failed) < len(message.recipients):
        message.mark_sent(route.kind, tally.last_reply)
    elif not tally.pending:
        message.mark_failed(route.kind, tally.last_reply)
    elif route.hold:
        # Waiting for its owner is not a failed try: it does not push the back-off further, and
        # fixing the server makes it due at once anyway (gateways.server_state).
        message.attempt_count = max(message.attempt_count - 1, 0)
        message.defer(now + retry_delay(1), route.kind, tally.last_reply)
    else:
        message.defer(now + retry_delay(message.attempt_count), route.kind, tally.last_reply)
        warn_delay = _delay_warning_due(message, now)
        if warn_delay:
            message.delay_warned_at = now
    if message.kind != Message.Kind.MAIL:
        return None  # never report on a report: that is how mail loops start
    if not tally.pending and tally.failed:
        return reports.build_report(message, tally.failed, "failed")
    if warn_delay:
        delayed = {rcpt: tally.last_reply for rcpt in tally.pending}
        return reports.build_report(message, delayed, "delayed")
    return None


def _delay_warning_due(message: Message, now: datetime) -> bool:
    hours = settings.SENDGATE_DELAY_WARNING_HOURS
    return bool(
        hours
        and message.delay_warned_at is None
        and now - message.created_at >= timedelta(hours=hours)
    )


def retry_delay(attempt_count: int) -> timedelta:
    schedule = settings.SENDGATE_RETRY_MINUTES
    return timedelta(minutes=schedule[min(max(attempt_count, 1), len(schedule)) - 1])


def due_message_ids(limit: int = 5000, interrupted: bool = True) -> list[int]:
    """What the sweeper should wake a worker for: due retries, lost tasks, dead workers' claims
    (``interrupted=False`` leaves the last out), the longest due first."""
    now = timezone.now()
    due = Message.objects.filter(_due(now)).order_by("next_attempt_at")
    if not interrupted:
        return list(due.values_list("pk", flat=True)[:limit])
    # UNION ALL rather than OR: each half walks its own partial index (message_due,
    # message_sending_lease) in order and stops at the limit, and PostgreSQL merges the two;
    # one OR made it fetch and sort the whole due backlog. Each half sits in a subquery of its
    # own, where SQLite too allows ORDER BY and LIMIT. Only the ids come back: loading the
    # timestamps cost more than the query (some 12 us each with Django's loader on psycopg 3).
    stale = Message.objects.filter(_stale(now)).order_by("next_attempt_at")
    (due_sql, due_params), (stale_sql, stale_params) = (
        rows.values(claim_id=F("pk"), due_at=F("next_attempt_at"))[:limit].query.sql_with_params()
        for rows in (due, stale)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT claim_id FROM (SELECT * FROM ({due_sql}) AS due "  # noqa: S608
            f"UNION ALL SELECT * FROM ({stale_sql}) AS stale) AS claimable "
            "ORDER BY due_at LIMIT %s",
            [*due_params, *stale_params, limit],
        )
        return [pk for (pk,) in cursor.fetchall()]


def interrupted_message_ids(message_ids: list[int]) -> list[int]:
    """Those of ``message_ids`` whose worker stopped while it had them."""
    stale = Message.objects.filter(_stale(timezone.now()), pk__in=message_ids)
    return list(stale.values_list("pk", flat=True))
