"""The connection test users run before saving a server: the delivery path, rate-limited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from directory.models import Account
from mailkit.oauth import TokenError
from mailkit.smtp import Outcome, run_session

from .models import ConnectionTest, SmtpServer
from .tokens import dial_target


class TooManyTests(Exception):
    pass


def run_connection_test(account: Account, server: SmtpServer, mail_from: str) -> Outcome:
    """Dial ``server`` exactly as delivery will and probe MAIL FROM; record the result."""
    since = timezone.now() - timedelta(hours=1)
    recent = ConnectionTest.objects.filter(account=account, created_at__gte=since).count()
    if recent >= settings.SENDGATE_CONNECTION_TESTS_PER_HOUR:
        raise TooManyTests
    outcome = probe(server, mail_from)
    ConnectionTest.objects.create(
        account=account, host=server.host, ok=outcome.ok, summary=outcome.reply or outcome.error
    )
    server.record_test(outcome.ok, outcome.reply or outcome.error)
    return outcome


def probe(server: SmtpServer, mail_from: str) -> Outcome:
    """Connect, secure, authenticate and probe MAIL FROM, as delivery does. An OAuth server
    first gets a usable access token; if it refuses one from the cache, the token is renewed
    and the probe runs once more (as delivery would on its next attempt)."""
    try:
        target, renewed = dial_target(server)
        outcome = asyncio.run(run_session(target, mail_from=mail_from))
        if outcome.auth_failed and server.uses_oauth and not renewed:
            target, _renewed = dial_target(server, force_refresh=True)
            outcome = asyncio.run(run_session(target, mail_from=mail_from))
    except TokenError as exc:
        return Outcome(ok=False, error=exc.message, auth_failed=exc.revoked)
    return outcome
