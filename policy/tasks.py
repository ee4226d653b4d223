from __future__ import annotations

from celery import shared_task

from . import service


@shared_task
def propagate_policy(change_id: int) -> None:
    service.propagate(change_id)


@shared_task
def resume_propagation() -> None:
    """Beat: restart any propagation whose task was lost or whose worker died."""
    for change_id in service.unfinished_change_ids():
        propagate_policy.delay(change_id)
