"""The Celery app: tasks are wake-up calls, the database outbox is the truth."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_prerun
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sendgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _keep_or_renew_database_connections(task, **_kwargs) -> None:
    """What Django does at the start of each request, at the start of each task: a connection
    older than CONN_MAX_AGE, or found broken (CONN_HEALTH_CHECKS), is closed and made again at
    its next query; any other is kept (see CELERY_DB_REUSE_MAX in the settings)."""
    if getattr(task.request, "is_eager", False):
        return  # runs inside its caller, in the caller's transaction
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
