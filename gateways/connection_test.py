"""The connection test users run before a server is saved: the delivery path, in a worker.

The web request only records what is to be tested (and counts it towards the hourly limit at
once); a worker dials the server, and the page polls the stored result. A request never waits
for a remote server (which may take SENDGATE_SMTP_DEADLINE seconds, longer than a web worker's
timeout).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from directory.models import Account
from mailkit.oauth import TokenError
from mailkit.smtp import Outcome, run_session

from . import server_state
from .models import ConnectionTest, SendAsAlias, SmtpServer
from .tokens import dial_target

# Run by name: the task module imports this one.
RUN_TASK = "gateways.tasks.run_connection_test"


class TooManyTests(Exception):
    pass


async def probe(server: SmtpServer, address: str) -> Outcome:
    """Log in as delivery will, then MAIL FROM and RCPT TO the alias's own address, and RSET."""
    return await run_session(server.target(), mail_from=address, recipients=[address])


def run_probe(server: SmtpServer, address: str) -> Outcome:
    """``probe`` in this thread. An OAuth server first gets a usable access token; if it refuses
    one from the cache, the token is renewed and the probe runs once more (as delivery would on
    its next attempt). A token that cannot be had fails the probe with the provider's reason
    (a revoked sign-in counts as a refused login)."""
    try:
        _target, renewed = dial_target(server)
        outcome = asyncio.run(probe(server, address))
        if outcome.auth_failed and server.uses_oauth and not renewed:
            dial_target(server, force_refresh=True)
            outcome = asyncio.run(probe(server, address))
    except TokenError as exc:
        return Outcome(ok=False, error=exc.message, auth_failed=exc.revoked)
    return outcome


def start_test(
    account: Account, server: SmtpServer, alias: SendAsAlias | None, fields: dict
) -> ConnectionTest:
    """Record a test of ``server`` (unsaved) for the alias change ``fields`` describe, and hand
    it to a worker. Raises TooManyTests past the hourly limit; tests still running count."""
    since = timezone.now() - timedelta(hours=1)
    with transaction.atomic():
        recent = ConnectionTest.objects.filter(account=account, created_at__gte=since).count()
        if recent >= settings.SENDGATE_CONNECTION_TESTS_PER_HOUR:
            raise TooManyTests
        test = ConnectionTest.objects.create(
            account=account,
            alias=alias,
            address=fields["address"],
            display_name=fields["display_name"],
            reply_to=fields["reply_to"],
            treat_as_alias=fields["treat_as_alias"],
            host=server.host,
            port=server.port,
            security=server.security,
            username=server.username,
            password=server.password or "",
        )
        transaction.on_commit(lambda: current_app.send_task(RUN_TASK, args=[test.pk]))
    return test


def run_connection_test(account: Account, server: SmtpServer, mail_from: str) -> Outcome:
    """Test ``server`` now, in this request: the domain gateway page's one check before an admin
    saves the organisation's smarthost, and the test of a fresh sign-in on the provider's return
    (its tokens are not stored before they pass). Users' password tests run in a worker, see
    ``start_test``. The same probe and the same hourly limit; the result is kept like any test's."""
    since = timezone.now() - timedelta(hours=1)
    with transaction.atomic():
        recent = ConnectionTest.objects.filter(account=account, created_at__gte=since).count()
        if recent >= settings.SENDGATE_CONNECTION_TESTS_PER_HOUR:
            raise TooManyTests
        test = ConnectionTest.objects.create(
            account=account,
            address=mail_from,
            host=server.host,
            port=server.port,
            security=server.security,
            username=server.username,
        )
    outcome = run_probe(server, mail_from)
    summary = outcome.reply or outcome.error
    ConnectionTest.objects.filter(pk=test.pk).update(
        state=ConnectionTest.State.PASSED if outcome.ok else ConnectionTest.State.FAILED,
        ok=outcome.ok,
        summary=summary,
        transcript="\n".join(outcome.transcript),
        finished_at=timezone.now(),
        applied_at=timezone.now() if outcome.ok else None,
    )
    if outcome.ok:
        server_state.passed_test(server, summary)
    else:
        server_state.failed_test(server, summary)
    return outcome


def _server_of(test: ConnectionTest) -> SmtpServer:
    """The server to dial for ``test``: with no new password, an alias's signed-in server is
    tested with its sign-in (the tested host, port and username on top)."""
    saved = test.alias.smtp_server if test.alias_id and test.alias else None
    if saved is not None and saved.uses_oauth and not test.password:
        return test.server(saved)
    return test.server()


def run_test(test_id: int) -> None:
    """Dial the server of a running test and store the outcome; a second run does nothing."""
    test = ConnectionTest.objects.filter(pk=test_id, state=ConnectionTest.State.RUNNING).first()
    if test is None:
        return
    outcome = run_probe(_server_of(test), test.address)
    summary = outcome.reply or outcome.error
    passed = ConnectionTest.State.PASSED
    ConnectionTest.objects.filter(pk=test.pk, state=ConnectionTest.State.RUNNING).update(
        state=passed if outcome.ok else ConnectionTest.State.FAILED,
        ok=outcome.ok,
        summary=summary,
        transcript="\n".join(outcome.transcript),
        finished_at=timezone.now(),
        # A failed test's password is of no further use: it goes at once.
        **({} if outcome.ok else {"password": ""}),
    )


# A test no worker finished in this long after its deadline never will (no worker is running,
# or it died): the page stops waiting and says so.
GRACE = timedelta(minutes=2)


def give_up_if_lost(test: ConnectionTest) -> ConnectionTest:
    """Fail a test that is still running long after it must have ended; return it fresh."""
    lost_since = timezone.now() - timedelta(seconds=settings.SENDGATE_SMTP_DEADLINE) - GRACE
    ConnectionTest.objects.filter(
        pk=test.pk, state=ConnectionTest.State.RUNNING, created_at__lt=lost_since
    ).update(
        state=ConnectionTest.State.FAILED,
        summary=_("The test did not run: no delivery worker picked it up. Try again later."),
        finished_at=timezone.now(),
        password="",
    )
    test.refresh_from_db()
    return test


def claim_passed(test: ConnectionTest) -> bool:
    """True for the one caller that gets to save the change a passed test tested."""
    return (
        ConnectionTest.objects.filter(
            pk=test.pk, state=ConnectionTest.State.PASSED, applied_at__isnull=True
        ).update(applied_at=timezone.now())
        == 1
    )


def tested_server(test: ConnectionTest, base: SmtpServer | None) -> SmtpServer:
    """The server the test passed with, marked as tested (in memory: the caller saves it)."""
    server = test.server(base)
    server_state.passed_test(server, test.summary)
    return server


def forget_password(test: ConnectionTest) -> None:
    ConnectionTest.objects.filter(pk=test.pk).update(password="")
