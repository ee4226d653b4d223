"""Delivery attempts: claim a batch of messages, route each, send, record what happened.

A batch shares one SMTP connection per server (servers are served concurrently), but every
message keeps its own route, deadline, attempt record and outcome. One message is a batch of one.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from gateways import tokens
from gateways.models import SendAsAlias, SmtpServer
from mailkit import dns, oauth
from mailkit.smtp import Job, Outcome, Security, Sender, Target, run_session
from outbox import notices
from outbox.models import DeliveryAttempt, Message

from . import reports
from .headers import with_sender
from .routing import Route, RouteKind, route_for

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
]


def _claimable(now: datetime) -> Q:
    due = Q(state__in=[Message.State.QUEUED, Message.State.DEFERRED], next_attempt_at__lte=now)
    stale = Q(state=Message.State.SENDING, lease_until__lt=now)  # its worker died
    return due | stale


def claim(message_ids: list[int]) -> list[int]:
    """Take the due messages among ``message_ids`` for this worker; no two workers get the same.

    PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED. SQLite ignores row locks, but its IMMEDIATE
    transactions take the write lock at BEGIN, so select-then-update cannot interleave there.
    """
    now = timezone.now()
    with transaction.atomic():
        due = Message.objects.filter(_claimable(now), pk__in=message_ids)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = list(due.values_list("pk", flat=True))
        Message.objects.filter(pk__in=claimed).update(
            state=Message.State.SENDING,
            lease_until=now + timedelta(seconds=settings.SENDGATE_CLAIM_LEASE_SECONDS),
            attempt_count=F("attempt_count") + 1,
        )
    return claimed


def routes_for(messages: list[Message]) -> dict[int, Route]:
    """The route of each message, with one query for all the aliases involved."""
    aliases = {
        (a.account_id, a.address): a
        for a in SendAsAlias.objects.select_related("smtp_server").filter(
            account_id__in={m.account_id for m in messages},
            address__in={m.from_address for m in messages},
        )
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


def deliver(message_id: int, resolver: dns.Resolver | None = None) -> None:
    deliver_batch([message_id], resolver)


# Messages each server gets per round. Outcomes are saved after every round, so a worker killed
# mid-batch can only have sent this many per server without a record (they are sent again).
ROUND_SIZE = 5


def deliver_batch(message_ids: list[int], resolver: dns.Resolver | None = None) -> None:
    """Make one attempt for each due message no other worker has; safe to call twice."""
    claimed = claim(message_ids)
    if not claimed:
        return
    messages = list(
        Message.objects.select_related("account__domain").filter(pk__in=claimed).order_by("pk")
    )  # a message deleted meanwhile is simply not here
    routes = routes_for(messages)
    servers = SmtpServer.objects.in_bulk({r.server_id for r in routes.values() if r.server_id})
    by_server: dict[int, list[Message]] = defaultdict(list)
    budget_ends = time.monotonic() + settings.SENDGATE_BATCH_SECONDS
    for message in messages:
        route = routes[message.pk]
        if route.hold:
            held = _held(message, servers[route.server_id].uses_oauth)
            _record([(message, [("", message.pending_recipients, held)])], routes)
        elif route.kind == RouteKind.DIRECT_MX:
            if time.monotonic() >= budget_ends:
                _release([message.pk])  # out of time: the next batch takes it
            else:
                _record([(message, _send_direct(route, message, resolver))], routes)
        else:
            by_server[route.server_id].append(message)
    by_target: dict[Target, list[Message]] = defaultdict(list)
    cached_tokens: set[int] = set()  # OAuth servers dialled with a token not renewed just now
    for server_id, server_messages in by_server.items():
        server = servers[server_id]
        try:
            target, renewed = tokens.dial_target(server)
        except oauth.TokenError as exc:
            # No token, no session: a revoked sign-in pauses the gateway like a refused
            # password; an unreachable token endpoint is a temporary failure.
            failure = Outcome(ok=False, error=exc.message, auth_failed=exc.revoked)
            _record(
                [(m, [(str(server), m.pending_recipients, failure)]) for m in server_messages],
                routes,
            )
            continue
        if server.uses_oauth and not renewed:
            cached_tokens.add(server_id)
        # Same host, port, security and credentials: one connection, whoever's alias it is.
        by_target[target].extend(server_messages)
    if by_target:
        _send_through_servers(by_target, routes, budget_ends, cached_tokens)


def _send_through_servers(
    by_target: dict[Target, list[Message]],
    routes: dict[int, Route],
    budget_ends: float,
    cached_tokens: set[int],
) -> None:
    """One connection per server, all servers at once, in rounds of ROUND_SIZE per server.

    The event loop (and with it every open connection) lives for the whole batch, but runs only
    during a round: between rounds this thread saves the outcomes with the ORM. The batch starts
    no new message after SENDGATE_BATCH_SECONDS (well inside the task's time limit); what it did
    not start is handed back.
    """

    def job(message: Message) -> Job:
        route = routes[message.pk]
        data = with_sender(bytes(message.raw), route.sender_header)
        return (route.envelope_from, list(message.pending_recipients), data)

    async def together(coroutines) -> list:
        return await asyncio.gather(*coroutines)

    loop = asyncio.new_event_loop()
    senders = {target: Sender(target) for target in by_target}
    queues = {target: list(messages) for target, messages in by_target.items()}
    stop_at = loop.time() + (budget_ends - time.monotonic())  # the batch's one time budget
    try:
        while any(queues.values()):
            this_round = {t: q[:ROUND_SIZE] for t, q in queues.items() if q}
            for target, taken in this_round.items():
                del queues[target][: len(taken)]
            outcomes = loop.run_until_complete(
                together(
                    (
                        senders[t].send([job(m) for m in taken], stop_at)
                        for t, taken in this_round.items()
                    )
                )
            )
            done, not_started = [], []
            for (target, taken), sent in zip(this_round.items(), outcomes, strict=True):
                for message, outcome in zip(taken, sent, strict=True):
                    if outcome is None:
                        not_started.append(message.pk)
                    else:
                        done.append(
                            (message, [(target.label, message.pending_recipients, outcome)])
                        )
            _record(done, routes, cached_tokens)
            if not_started:
                _release(not_started)
    finally:
        loop.run_until_complete(together(s.close() for s in senders.values()))
        loop.close()


def _record(
    done: list[tuple[Message, Results]],
    routes: dict[int, Route],
    cached_tokens: set[int] | frozenset[int] = frozenset(),
) -> None:
    """Save attempts and outcomes of finished messages, with any reports, in one transaction.

    A user gateway that refused its credentials is paused, unless it refused an OAuth access
    token from the cache: that token is dropped and the message is due again at once, so the
    next attempt signs in with a renewed one (a renewed token refused pauses the gateway).
    """
    if not done:
        return
    retry_with_new_token = {
        message.pk
        for message, results in done
        if routes[message.pk].server_id in cached_tokens
        and any(o.auth_failed for _l, _r, o in results)
    }
    attempts = [
        _attempt(message, routes[message.pk], label, outcome)
        for message, results in done
        for label, _rcpts, outcome in results
        if label  # a held message made no attempt
    ]
    with transaction.atomic():  # a report exists if and only if the outcome it reports was saved
        DeliveryAttempt.objects.bulk_create(attempts)
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
            if route.kind == RouteKind.USER_GATEWAY and failed_auth:
                if message.pk in retry_with_new_token:
                    tokens.expire_access_token(route.server_id)
                else:
                    _pause_gateway(route.server_id, message, failed_auth[0].error)


def _release(message_ids: list[int]) -> None:
    """Hand back claimed messages that were not attempted: due again at once, no attempt used."""
    Message.objects.filter(pk__in=message_ids, state=Message.State.SENDING).update(
        state=Message.State.QUEUED, lease_until=None, attempt_count=F("attempt_count") - 1
    )


def _save_settled(messages: list[Message]) -> None:
    """Write the settled fields of every message with one parameterised UPDATE per row.

    Django's bulk_update builds a CASE expression per field per row: measured here it took more
    than half of a batch's time. executemany with each field's own DB preparation is equivalent.
    """
    fields = [Message._meta.get_field(name) for name in SETTLED_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(Message._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608 - names from the model
    rows = [
        [f.get_db_prep_save(getattr(m, f.attname), connection) for f in fields] + [m.pk]
        for m in messages
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


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


def _send_direct(route: Route, message: Message, resolver: dns.Resolver | None) -> Results:
    """Deliver to each recipient domain's MX hosts in preference order."""
    by_domain: dict[str, list[str]] = defaultdict(list)
    for rcpt in message.pending_recipients:
        by_domain[rcpt.rsplit("@", 1)[1].lower()].append(rcpt)
    data = with_sender(bytes(message.raw), route.sender_header)
    results = []
    for domain, group in by_domain.items():
        try:
            hosts = dns.mx_hosts(domain, resolver)
        except LookupError as exc:
            results.append((domain, group, Outcome(ok=False, error=str(exc), permanent=True)))
            continue
        except TimeoutError as exc:
            results.append((domain, group, Outcome(ok=False, error=str(exc))))
            continue
        outcome = Outcome(ok=False, error=_("No mail exchanger answered."))
        label = domain
        sender_domain = message.account.domain
        security = (
            Security.STARTTLS
            if sender_domain and sender_domain.require_tls_direct
            else Security.OPPORTUNISTIC
        )
        for host in hosts:
            target = Target(host=host, port=settings.SENDGATE_DIRECT_MX_PORT, security=security)
            label = target.label
            outcome = asyncio.run(run_session(target, route.envelope_from, group, data))
            if outcome.ok or outcome.permanent:
                break
        results.append((label, group, outcome))
    return results


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
    )


def _pause_gateway(server_id: int, message: Message, reason: str) -> None:
    """Stop using a user's gateway that refused its credentials, and tell its owner once."""
    if SmtpServer.pause_if_running(server_id, reason):
        signed_in = SmtpServer.objects.filter(pk=server_id).exclude(oauth_provider="").exists()
        notices.notify_gateway_paused(
            message.account, message.from_address, reason, signed_in=signed_in
        )


def release_held(account_id: int, from_address: str) -> list[int]:
    """Make the waiting mail sent as ``from_address`` due now (its gateway works again); return
    the ids for the caller to wake a worker with."""
    waiting = Message.objects.filter(
        account_id=account_id, from_address=from_address, state=Message.State.DEFERRED
    )
    ids = list(waiting.values_list("pk", flat=True))
    Message.objects.filter(pk__in=ids, state=Message.State.DEFERRED).update(
        next_attempt_at=timezone.now()
    )
    return ids


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


def _settle(message: Message, route: Route, results: Results) -> EmailMessage | None:
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
    return timedelta(minutes=schedule[min(attempt_count, len(schedule)) - 1])


def due_message_ids(limit: int = 5000) -> list[int]:
    """What the sweeper should wake a worker for: due retries, lost tasks, dead workers' claims."""
    claimable = Message.objects.filter(_claimable(timezone.now()))
    return list(claimable.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
