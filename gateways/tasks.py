from __future__ import annotations

from celery import shared_task

from . import health


@shared_task
def retest_gateways() -> None:
    """Beat: hand each stale per-user gateway its own re-test task."""
    for server_id in health.due_for_retest(limit=500):
        retest_gateway.delay(server_id)


@shared_task
def retest_gateway(server_id: int) -> None:
    health.retest(server_id)
