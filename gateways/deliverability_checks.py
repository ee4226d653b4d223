"""Deliverability checks in a worker, one per (alias domain, gateway host), kept for an hour.

The page asks for the check and polls; a worker does the DNS lookups under one overall deadline
(SENDGATE_DELIVERABILITY_SECONDS), since the records belong to domains users control.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from mailkit import dns

from .deliverability import Facts, look_up
from .models import DeliverabilityCheck

RUN_TASK = "gateways.tasks.check_deliverability"
KEEP_FOR = timedelta(hours=1)
# A check asked for this long ago and not finished lost its task: it is asked for again.
GIVE_UP_AFTER = timedelta(minutes=2)


def requested(alias_domain: str, gateway_host: str) -> DeliverabilityCheck:
    """The check for this domain and host: fresh from the last hour, or (re)started now.

    A stale check keeps its old facts on show until the new ones are in.
    """
    key: dict[str, Any] = {
        "alias_domain": alias_domain.lower(),
        "gateway_host": gateway_host.lower(),
    }
    try:
        with transaction.atomic():
            check, created = DeliverabilityCheck.objects.get_or_create(**key)
    except IntegrityError:  # another request created it just now
        check, created = DeliverabilityCheck.objects.get(**key), False
    now = timezone.now()
    if created:
        _start(check)
        return check
    due = Q(finished_at__lt=now - KEEP_FOR) | Q(
        finished_at__isnull=True, requested_at__lt=now - GIVE_UP_AFTER
    )
    # Only the request whose UPDATE matched starts a lookup: one per hour, however many pages.
    if DeliverabilityCheck.objects.filter(due, pk=check.pk).update(
        requested_at=now, finished_at=None
    ):
        check.requested_at, check.finished_at = now, None
        _start(check)
    return check


def _start(check: DeliverabilityCheck) -> None:
    transaction.on_commit(lambda: current_app.send_task(RUN_TASK, args=[check.pk]))


def run(check_id: int, resolver: dns.Resolver | None = None) -> None:
    check = DeliverabilityCheck.objects.filter(pk=check_id, finished_at__isnull=True).first()
    if check is None:
        return  # done already (a redelivered task)
    bounded = dns.DeadlineResolver(
        resolver or dns.default_resolver(), settings.SENDGATE_DELIVERABILITY_SECONDS
    )
    facts = look_up(check.alias_domain, check.gateway_host or None, bounded)
    DeliverabilityCheck.objects.filter(pk=check.pk).update(
        facts=facts.to_json(), finished_at=timezone.now()
    )


def facts_of(check: DeliverabilityCheck) -> Facts | None:
    return None if check.facts is None else Facts.from_json(check.facts)
