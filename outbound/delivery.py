"""One delivery attempt of one message: claim it, route it, send it, record what happened."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from gateways import dns
from gateways.models import SendAsAlias, SmtpServer
from gateways.smtp import Outcome, Security, Target, run_session

from . import reports
from .headers import with_sender
from .models import DeliveryAttempt, Message
from .routing import AliasFacts, Route, RouteKind, choose_route


def claim(message_id: int) -> bool:
    """Take the message for this worker with a conditional UPDATE (works on SQLite and PostgreSQL).

    Exactly one worker wins; a SENDING message whose lease ran out (its worker died) is claimable.
    """
    now = timezone.now()
    due = Q(state__in=[Message.State.QUEUED, Message.State.DEFERRED], next_attempt_at__lte=now)
    stale = Q(state=Message.State.SENDING, lease_until__lt=now)
    return (
        Message.objects.filter(due | stale, pk=message_id).update(
            state=Message.State.SENDING,
            lease_until=now + timedelta(seconds=settings.SENDGATE_CLAIM_LEASE_SECONDS),
            attempt_count=F("attempt_count") + 1,
        )
        == 1
    )


def route_for(message: Message) -> Route:
    account = message.account
    alias = (
        SendAsAlias.objects.select_related("smtp_server")
        .filter(account=account, address=message.from_address)
        .first()
    )
    facts = None
    if alias is not None:
        server = alias.smtp_server
        facts = AliasFacts(
            address=alias.address,
            verified=alias.is_verified,
            server_id=server.pk if server else None,
            server_ready=bool(server and server.last_test_ok),
            server_paused=bool(server and server.is_paused),
        )
    domain = account.domain
    return choose_route(
        primary_address=account.email,
        own_domains=account.own_domain_names(),
        from_address=message.from_address,
        alias=facts,
        gateways_allowed=account.gateways_allowed,
        policy_version=account.policy_version,
        domain_gateway_id=domain.outbound_gateway_id if domain else None,
        automatic=message.kind == Message.Kind.REPORT,
    )


Results = list[tuple[str, list[str], Outcome]]


def deliver(message_id: int, resolver: dns.Resolver | None = None) -> None:
    """Make one attempt if the message is due and no other worker has it; safe to call twice."""
    if not claim(message_id):
        return
    message = Message.objects.select_related("account__domain").filter(pk=message_id).first()
    if message is None:  # deleted meanwhile: nothing to do
        return
    route = route_for(message)
    if route.hold:
        reply = _(
            "Waiting: your SMTP server for %(address)s is paused because it refused the "
            "password. Update the password to resume."
        ) % {"address": message.from_address}
        results: Results = [("", message.pending_recipients, Outcome(ok=False, error=reply))]
        _settle(message, route, results)
        return
    data = with_sender(bytes(message.raw), route.sender_header)
    if route.kind == RouteKind.DIRECT_MX:
        results = _send_direct(route, message.pending_recipients, data, resolver)
    else:
        target = SmtpServer.objects.get(pk=route.server_id).target()
        results = [(target.label, message.pending_recipients, _run(target, route, message, data))]
    for server_label, recipients, outcome in results:
        _record(message, route, server_label, recipients, outcome)
    if route.kind == RouteKind.USER_GATEWAY and any(o.auth_failed for _s, _r, o in results):
        _pause_gateway(route.server_id, message, results[0][2].error)
    _settle(message, route, results)


def _run(target: Target, route: Route, message: Message, data: bytes) -> Outcome:
    return asyncio.run(
        run_session(target, route.envelope_from, list(message.pending_recipients), data)
    )


def _send_direct(
    route: Route, recipients: list[str], data: bytes, resolver: dns.Resolver | None
) -> Results:
    """Deliver to each recipient domain's MX hosts in preference order."""
    by_domain: dict[str, list[str]] = defaultdict(list)
    for rcpt in recipients:
        by_domain[rcpt.rsplit("@", 1)[1].lower()].append(rcpt)
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
        for host in hosts:
            target = Target(
                host=host, port=settings.SENDGATE_DIRECT_MX_PORT, security=Security.OPPORTUNISTIC
            )
            label = target.label
            outcome = asyncio.run(run_session(target, route.envelope_from, group, data))
            if outcome.ok or outcome.permanent:
                break
        results.append((label, group, outcome))
    return results


def _record(
    message: Message, route: Route, server: str, recipients: list[str], outcome: Outcome
) -> None:
    if outcome.ok:
        result = DeliveryAttempt.Outcome.SENT
    elif outcome.permanent:
        result = DeliveryAttempt.Outcome.FAILED
    else:
        result = DeliveryAttempt.Outcome.DEFERRED
    reply = outcome.reply if outcome.ok else outcome.error
    if outcome.refused:
        reply += "\n" + "\n".join(f"{r}: {text}" for r, text in outcome.refused.items())
    DeliveryAttempt.objects.create(
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
    with transaction.atomic():
        paused = SmtpServer.objects.filter(pk=server_id, paused_at__isnull=True).update(
            paused_at=timezone.now(), pause_reason=reason
        )
        if paused:
            account = message.account
            body = _(
                "The SMTP server you set up for %(address)s refused the username or password:\n"
                "%(reason)s\n\nMail sent as %(address)s waits until you update the password on "
                "the Send mail as page; it is not sent any other way meanwhile."
            ) % {"address": message.from_address, "reason": reason}
            notice = reports.build_notice(
                account,
                _("Action needed: your SMTP server for %(address)s")
                % {"address": message.from_address},
                body,
            )
            reports.send_to_sender(account, notice)


def _settle(message: Message, route: Route, results: Results) -> None:
    """Take finished recipients off the pending list, set the next state, tell the sender."""
    pending = list(message.pending_recipients)
    failed = dict(message.failed_recipients)
    last_reply = ""
    for _server, recipients, outcome in results:
        last_reply = outcome.reply if outcome.ok else outcome.error
        for rcpt in recipients:
            refusal = outcome.refused.get(rcpt)
            if outcome.ok and refusal is None:
                pending.remove(rcpt)
            elif outcome.permanent or (refusal is not None and refusal.startswith("5")):
                failed[rcpt] = refusal or outcome.error
                pending.remove(rcpt)
            elif refusal is not None:
                last_reply = refusal
    now = timezone.now()
    expired = now - message.created_at > timedelta(days=settings.SENDGATE_MAX_QUEUE_DAYS)
    if pending and expired:
        for rcpt in pending:
            failed[rcpt] = _("Gave up after %(days)s days: %(reply)s") % {
                "days": f"{settings.SENDGATE_MAX_QUEUE_DAYS:g}",
                "reply": last_reply,
            }
        pending = []
    message.pending_recipients = pending
    message.failed_recipients = failed
    warn_delay = False
    if not pending and len(failed) < len(message.recipients):
        message.mark_sent(route.kind, last_reply)
    elif not pending:
        message.mark_failed(route.kind, last_reply)
    else:
        message.defer(now + retry_delay(message.attempt_count), route.kind, last_reply)
        warn_delay = _delay_warning_due(message, now)
        if warn_delay:
            message.delay_warned_at = now
    with transaction.atomic():  # the report exists if and only if the outcome was saved
        message.save()
        if message.kind != Message.Kind.MAIL:
            return  # never report on a report: that is how mail loops start
        if not pending and failed:
            reports.send_to_sender(message.account, reports.build_report(message, failed, "failed"))
        elif warn_delay:
            delayed = {rcpt: last_reply for rcpt in pending}
            reports.send_to_sender(
                message.account, reports.build_report(message, delayed, "delayed")
            )


def _delay_warning_due(message: Message, now) -> bool:
    hours = settings.SENDGATE_DELAY_WARNING_HOURS
    return bool(
        hours
        and message.delay_warned_at is None
        and now - message.created_at >= timedelta(hours=hours)
    )


def retry_delay(attempt_count: int) -> timedelta:
    schedule = settings.SENDGATE_RETRY_MINUTES
    return timedelta(minutes=schedule[min(attempt_count, len(schedule)) - 1])


def due_message_ids(limit: int = 1000) -> list[int]:
    """What the sweeper should wake a worker for: due retries, lost tasks, dead workers' claims."""
    now = timezone.now()
    due = Q(state__in=[Message.State.QUEUED, Message.State.DEFERRED], next_attempt_at__lte=now)
    stale = Q(state=Message.State.SENDING, lease_until__lt=now)
    return list(Message.objects.filter(due | stale).values_list("pk", flat=True)[:limit])
