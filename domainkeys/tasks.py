from __future__ import annotations

import logging

from celery import shared_task

from .keys import check_dns
from .models import DkimKey

log = logging.getLogger(__name__)


@shared_task
def check_waiting_keys() -> None:
    """Beat: look up every key still waiting for DNS, so signing starts without anyone clicking
    "Check DNS" again. One key's failure is logged and the others are still checked."""
    waiting = DkimKey.objects.filter(state=DkimKey.State.WAITING).select_related("domain")
    for key in waiting.defer("private_key")[:500]:  # the check never needs the private key
        try:
            check_dns(key)
        except Exception:
            log.exception("DNS check of DKIM key %s failed", key.record_name)
