"""Health checks for /health/: database, broker, a worker answering, and beat's last run."""

from __future__ import annotations

import dataclasses
import datetime

from celery import current_app
from django.conf import settings
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from .models import Heartbeat


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (Redis, or the embedded filesystem transport)."""

    timeout: datetime.timedelta = dataclasses.field(
        default=datetime.timedelta(seconds=3), repr=False
    )

    def run(self) -> None:
        try:
            with current_app.connection_for_write() as connection:
                connection.ensure_connection(
                    max_retries=1,
                    # kombu takes seconds as a float; celery-types says int.
                    timeout=self.timeout.total_seconds(),  # type: ignore[arg-type]
                )
        except Exception as exc:  # kombu raises its own and the transport's errors
            raise ServiceUnavailable("The broker does not accept connections.") from exc


@dataclasses.dataclass
class Beat(HealthCheck):
    """Beat sent its heartbeat task, and a worker ran it, within SENDGATE_BEAT_STALE_SECONDS."""

    def run(self) -> None:
        last = Heartbeat.objects.filter(name="beat").values_list("at", flat=True).first()
        stale = datetime.timedelta(seconds=settings.SENDGATE_BEAT_STALE_SECONDS)
        if last is None:
            raise ServiceUnavailable("Beat has not run yet.")
        if timezone.now() - last > stale:
            age = int((timezone.now() - last).total_seconds())
            raise ServiceUnavailable(f"Beat last ran {age} s ago.")


CHECKS = [
    "health_check.checks.Database",
    Broker,
    # limit=1: one worker answering is enough; do not wait out the timeout for more.
    ("health_check.contrib.celery.Ping", {"timeout": datetime.timedelta(seconds=2), "limit": 1}),
    Beat,
]
