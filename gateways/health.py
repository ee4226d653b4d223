"""Periodic re-tests of users' SMTP servers, so a changed password is found before mail waits."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import server_state
from .connection_test import run_probe
from .models import SendAsAlias, SmtpServer


def due_for_retest(limit: int) -> list[int]:
    """Per-user gateways not tested for SENDGATE_GATEWAY_RETEST_HOURS, oldest first. Paused ones
    too (once a period, one login): if the cause went away by itself, their mail goes again."""
    stale = timezone.now() - timedelta(hours=settings.SENDGATE_GATEWAY_RETEST_HOURS)
    return list(
        SmtpServer.objects.filter(alias__isnull=False)
        .filter(Q(last_tested_at__isnull=True) | Q(last_tested_at__lt=stale))
        .order_by("last_tested_at")
        .values_list("pk", flat=True)[:limit]
    )


def retest(server_id: int) -> None:
    """Probe the server as delivery would; server_state decides what the outcome changes."""
    alias = (
        SendAsAlias.objects.select_related("smtp_server", "account")
        .filter(smtp_server_id=server_id)
        .first()
    )
    if alias is None:
        return  # deleted meanwhile
    server = alias.smtp_server
    assert server is not None  # the alias was found by its server
    outcome = run_probe(server, alias.address)
    server_state.retested(server, alias, outcome)
