from __future__ import annotations

from celery import shared_task

from . import onboarding


@shared_task
def send_import_invitations(job_id: int) -> None:
    onboarding.send_import_invitations(job_id)


@shared_task
def resume_import_invitations() -> None:
    """Beat: restart invitations of imports whose task was lost; a duplicate run is harmless."""
    for job_id in onboarding.stalled_import_ids():
        send_import_invitations.delay(job_id)
