"""The connection test users run before saving a server: the delivery path, rate-limited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from directory.models import Account
from mailkit.smtp import Outcome, run_session

from . import server_state
from .models import ConnectionTest, SmtpServer


class TooManyTests(Exception):
    pass


async def probe(server: SmtpServer, address: str) -> Outcome:
    """Log in as delivery will, then MAIL FROM and RCPT TO the alias's own address, and RSET."""
    return await run_session(server.target(), mail_from=address, recipients=[address])


def run_connection_test(account: Account, server: SmtpServer, mail_from: str) -> Outcome:
    """Dial ``server`` exactly as delivery will and probe MAIL FROM; record the result."""
    since = timezone.now() - timedelta(hours=1)
    recent = ConnectionTest.objects.filter(account=account, created_at__gte=since).count()
    if recent >= settings.SENDGATE_CONNECTION_TESTS_PER_HOUR:
        raise TooManyTests
    # Counted from the moment it starts, so tests still running count towards the limit.
    test = ConnectionTest.objects.create(account=account, host=server.host, ok=False)
    outcome = asyncio.run(probe(server, mail_from))
    summary = outcome.reply or outcome.error
    ConnectionTest.objects.filter(pk=test.pk).update(ok=outcome.ok, summary=summary)
    if outcome.ok:
        server_state.passed_test(server, summary)
    else:
        server_state.failed_test(server, summary)
    return outcome
