from __future__ import annotations

from celery import shared_task

from . import connection_test, deliverability_checks, health


@shared_task
def retest_gateways() -> None:
    """Beat: hand each stale per-user gateway its own re-test task."""
    for server_id in health.due_for_retest(limit=500):
        retest_gateway.delay(server_id)


@shared_task
def retest_gateway(server_id: int) -> None:
    health.retest(server_id)


@shared_task
def run_connection_test(test_id: int) -> None:
    """A connection test a user started on the send-as page."""
    connection_test.run_test(test_id)


@shared_task
def check_deliverability(check_id: int) -> None:
    """DNS look-ups for the deliverability hint on the send-as page."""
    deliverability_checks.run(check_id)
