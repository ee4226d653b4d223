from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Error, register


class OutboundConfig(AppConfig):
    name = "outbound"
    verbose_name = "Outbound mail"

    def ready(self) -> None:
        register(check_delivery_settings)


def check_delivery_settings(app_configs, **kwargs) -> list[Error]:
    """Settings that would let a worker send a message twice or never finish, refused at start."""
    errors = []
    if settings.SENDGATE_CLAIM_LEASE_SECONDS <= settings.CELERY_TASK_TIME_LIMIT:
        errors.append(
            Error(
                "SENDGATE_CLAIM_LEASE_SECONDS must be longer than the delivery task's time limit "
                f"({settings.CELERY_TASK_TIME_LIMIT} s): otherwise a message still being sent "
                "is taken by another worker and sent twice.",
                id="sendgate.E101",
            )
        )
    if not settings.SENDGATE_RETRY_MINUTES or min(settings.SENDGATE_RETRY_MINUTES) <= 0:
        errors.append(
            Error("SENDGATE_RETRY_MINUTES must list positive minutes.", id="sendgate.E102")
        )
    if settings.SENDGATE_SAME_ERROR_LIMIT < 1:
        errors.append(Error("SENDGATE_SAME_ERROR_LIMIT must be at least 1.", id="sendgate.E103"))
    return errors
