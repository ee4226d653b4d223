"""Periodic re-tests of users' SMTP servers, so a changed password is found before mail waits."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from outbox.notices import notify_gateway_paused

from .connection_test import probe
from .models import SendAsAlias, SmtpServer


def due_for_retest(limit: int) -> list[int]:
    """Running per-user gateways not tested for SENDGATE_GATEWAY_RETEST_HOURS, oldest first."""
    stale = timezone.now() - timedelta(hours=settings.SENDGATE_GATEWAY_RETEST_HOURS)
    return list(
        SmtpServer.objects.filter(alias__isnull=False, paused_at__isnull=True)
        .filter(Q(last_tested_at__isnull=True) | Q(last_tested_at__lt=stale))
        .order_by("last_tested_at")
        .values_list("pk", flat=True)[:limit]
    )


def retest(server_id: int) -> None:
    """Probe the server as delivery would. A refused password pauses it and tells its owner;
    other failures are only recorded (the server may be down for a while: mail retries)."""
    alias = (
        SendAsAlias.objects.select_related("smtp_server", "account")
        .filter(smtp_server_id=server_id)
        .first()
    )
    if alias is None:
        return  # deleted meanwhile
    server = alias.smtp_server
    outcome = probe(server, alias.address)
    SmtpServer.objects.filter(pk=server_id).update(
        last_tested_at=timezone.now(), last_test_summary=outcome.reply or outcome.error
    )
    if outcome.auth_failed and SmtpServer.pause_if_running(server_id, outcome.error):
        notify_gateway_paused(
            alias.account, alias.address, outcome.error, signed_in=server.uses_oauth
        )
