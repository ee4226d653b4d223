from __future__ import annotations

from celery import shared_task

from . import retention
from .models import Heartbeat


@shared_task
def prune() -> None:
    """Beat, daily: the retention settings applied (see ``manage.py prune``)."""
    retention.prune()


@shared_task
def heartbeat() -> None:
    """Beat, every 30 s: proves to /health/ that beat sends and a worker runs tasks."""
    Heartbeat.beat("beat")
