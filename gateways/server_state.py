"""The life of a user's SMTP server, in one place: untested → ok → paused(reason) → ok.

- A connection test that passes makes it ``ok``, and ends a pause: the owner fixed the cause.
  Signing in again with the OAuth provider is such a test (gateways.oauth_views). Mail that
  waited for it (held while paused, or deferred after a failure) is due at once.
- Delivery or the periodic re-test is refused the password (a 5xx to AUTH, 5.7.30 "basic
  authentication is not supported" included), or a signed-in server's token (a renewed one
  refused, or the provider's invalid_grant): ``ok`` → ``paused``, and the owner is told once.
  A paused server is not dialled for mail; its mail waits.
- A re-test that passes resumes a paused server the same way a passing connection test does;
  any other failed re-test is only recorded (the server may be down for a while: mail retries).

Nothing else changes these fields: editing an alias's name, or saving it while the policy hides
the SMTP fields, leaves the server's state as it is.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from django.db import transaction
from django.utils import timezone

from directory.models import Account
from mailkit.logs import event
from mailkit.smtp import Outcome
from outbox.models import Message
from outbox.notices import notify_gateway_paused
from outbox.queue import make_due

from .models import SendAsAlias, SmtpServer

log = logging.getLogger("sendgate.gateways")


class State(StrEnum):
    UNTESTED = "untested"
    OK = "ok"
    PAUSED = "paused"


def state_of(server: SmtpServer) -> State:
    if server.paused_at is not None:
        return State.PAUSED
    return State.OK if server.last_test_ok else State.UNTESTED


def _log(server: SmtpServer | int, before: State, after: State, why: str) -> None:
    """One log line per transition: gateway.paused, gateway.resumed, or gateway.ok / untested."""
    pk = server if isinstance(server, int) else server.pk
    if after is State.PAUSED:
        name, level = "gateway.paused", logging.WARNING
    elif before is State.PAUSED:
        name, level = "gateway.resumed", logging.INFO
    else:
        name, level = f"gateway.{after}", logging.INFO
    event(log, name, level, server=pk, before=str(before), after=str(after), reason=why)


def passed_test(server: SmtpServer, summary: str) -> None:
    """A connection test passed: ``ok`` from any state. In memory; the caller saves the server
    with the edit it belongs to, then calls ``release_mail``."""
    before = state_of(server)
    server.last_test_ok = True
    server.last_tested_at = timezone.now()
    server.last_test_summary = summary
    server.paused_at = None
    server.pause_reason = ""
    if before is not State.OK:
        _log(server, before, State.OK, "connection test passed")


def failed_test(server: SmtpServer, summary: str) -> None:
    """A connection test failed: the state stays (the edit it belongs to is not saved)."""
    server.last_tested_at = timezone.now()
    server.last_test_summary = summary


def pause(
    server_id: int, reason: str, account: Account, address: str, *, signed_in: bool = False
) -> bool:
    """``ok`` → ``paused`` after a refused password, or a sign-in the provider revoked
    (``signed_in``: invalid_grant, or 5.7.30 basic authentication not supported); True (and
    the owner told) only for the caller that actually paused it, so the owner hears it once."""
    paused = (
        SmtpServer.objects.filter(pk=server_id, paused_at__isnull=True).update(
            paused_at=timezone.now(), pause_reason=reason
        )
        == 1
    )
    if paused:
        _log(server_id, State.OK, State.PAUSED, reason)
        notify_gateway_paused(account, address, reason, signed_in=signed_in)
    return paused


def retested(server: SmtpServer, alias: SendAsAlias, outcome: Outcome) -> None:
    """Record a periodic re-test: a pass resumes a paused server, a refused password pauses it."""
    summary = outcome.reply or outcome.error
    if outcome.ok:
        before = state_of(server)
        with transaction.atomic():
            SmtpServer.objects.filter(pk=server.pk).update(
                last_test_ok=True,
                last_tested_at=timezone.now(),
                last_test_summary=summary,
                paused_at=None,
                pause_reason="",
            )
            if before is not State.OK:
                _log(server, before, State.OK, "re-test passed")
                release_mail(alias)
        return
    SmtpServer.objects.filter(pk=server.pk).update(
        last_tested_at=timezone.now(), last_test_summary=summary
    )
    if outcome.auth_failed:
        pause(server.pk, outcome.error, alias.account, alias.address, signed_in=server.uses_oauth)


def release_mail(alias: SendAsAlias) -> list[int]:
    """Make the mail waiting for the alias's server (held or deferred) due now."""
    waiting = Message.objects.filter(account=alias.account, from_address__iexact=alias.address)
    return make_due(waiting)
