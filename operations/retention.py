"""Retention: drop what is only kept for a while (bodies of finished mail, old records).

The metadata of every message (who, to whom, when, route, outcome) stays; only its body goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from gateways.models import ConnectionTest
from mailkit.logs import event
from outbox.models import DeliveryAttempt, Message

log = logging.getLogger("sendgate.retention")

FINISHED = [Message.State.SENT, Message.State.FAILED]


@dataclass(frozen=True)
class Pruned:
    bodies: int
    attempts: int
    connection_tests: int


def prune(body_days: int | None = None, record_days: int | None = None) -> Pruned:
    """Remove old bodies and records as the retention settings say; 0 days keeps them."""
    body_days = settings.SENDGATE_RETENTION_BODY_DAYS if body_days is None else body_days
    record_days = settings.SENDGATE_RETENTION_RECORD_DAYS if record_days is None else record_days
    now = timezone.now()
    bodies = attempts = tests = 0
    if body_days > 0:
        bodies = Message.objects.filter(
            state__in=FINISHED,
            created_at__lt=now - timedelta(days=body_days),
            body_pruned_at__isnull=True,
        ).update(raw=b"", body_pruned_at=now)
    if record_days > 0:
        cutoff = now - timedelta(days=record_days)
        attempts, _ = DeliveryAttempt.objects.filter(
            started_at__lt=cutoff, message__state__in=FINISHED
        ).delete()
        tests, _ = ConnectionTest.objects.filter(created_at__lt=cutoff).delete()
    result = Pruned(bodies, attempts, tests)
    event(
        log,
        "retention.pruned",
        bodies=bodies,
        attempts=attempts,
        connection_tests=tests,
        body_days=body_days,
        record_days=record_days,
    )
    return result
