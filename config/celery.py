"""The Celery app: tasks are wake-up calls, the database outbox is the truth."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sendgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
