from __future__ import annotations

from celery import shared_task

from . import propagation


@shared_task
def propagate_policy(change_id: int) -> None:
    propagation.propagate(change_id)


@shared_task
def resume_propagation() -> None:
    """Beat: restart propagations whose task was lost or whose worker died (lease run out).

    A running propagation renews its lease every batch, so beat does not start a duplicate; if it
    did anyway, the claim in ``propagate`` lets only one of them work.
    """
    for change_id in propagation.resumable_change_ids():
        propagate_policy.delay(change_id)
