"""/metrics: the processes' counters (multiprocess files) plus figures read from the database.

Queue depth, propagation and paused gateways live in the database; reading them at scrape time
keeps them true whichever process changed them, with a handful of indexed queries.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from gateways.models import SmtpServer
from outbox.models import Message
from policy.models import PolicyChange

from .models import Heartbeat

LIVE_STATES = Message.WAITING_STATES


class DatabaseCollector:
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        depth = GaugeMetricFamily(
            "sendgate_queue_messages", "Messages not yet finished, by state.", labels=["state"]
        )
        counts = dict(
            Message.objects.filter(state__in=LIVE_STATES)
            .values_list("state")
            .annotate(n=Count("pk"))
            .values_list("state", "n")
        )
        for state in LIVE_STATES:
            depth.add_metric([state], counts.get(state, 0))
        yield depth

        oldest = Message.objects.filter(
            state__in=[Message.State.QUEUED, Message.State.DEFERRED], next_attempt_at__lte=now
        ).aggregate(at=Min("next_attempt_at"))["at"]
        yield GaugeMetricFamily(
            "sendgate_queue_oldest_due_seconds",
            "How long the longest-waiting due message has been due (0: nothing is waiting).",
            value=(now - oldest).total_seconds() if oldest else 0,
        )

        running = PolicyChange.objects.filter(finished_at__isnull=True, superseded=False)
        totals = running.aggregate(
            n=Count("pk"), total=Sum("accounts_total"), applied=Sum("accounts_applied")
        )
        yield GaugeMetricFamily(
            "sendgate_policy_propagations_running",
            "Policy changes still being applied to accounts.",
            value=totals["n"],
        )
        yield GaugeMetricFamily(
            "sendgate_policy_propagation_accounts_pending",
            "Accounts that running policy changes have yet to reach.",
            value=max((totals["total"] or 0) - (totals["applied"] or 0), 0),
        )
        yield GaugeMetricFamily(
            "sendgate_paused_gateways",
            "Users' SMTP servers paused after refusing their credentials.",
            value=SmtpServer.objects.filter(paused_at__isnull=False).count(),
        )
        beat = GaugeMetricFamily(
            "sendgate_heartbeat_age_seconds",
            "Seconds since a periodic job last ran (beat sends it, a worker runs it).",
            labels=["job"],
        )
        for name, at in Heartbeat.objects.values_list("name", "at"):
            beat.add_metric([name], (now - at).total_seconds())
        yield beat


def exposition() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
