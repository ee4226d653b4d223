from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .keys import check_dns
from .models import DkimKey

log = logging.getLogger(__name__)


# An active key's record is looked up again this often: a record deleted or edited by mistake
# makes every signature fail to verify, and the DKIM page should say so.
ACTIVE_CHECK_INTERVAL = timedelta(hours=24)


@shared_task
def check_dkim_keys() -> None:
    """Beat: look up every key still waiting for DNS, so signing starts without anyone clicking
    "Check DNS" again, and each active key once a day. One key's failure is logged and the
    others are still checked."""
    due = DkimKey.objects.due_for_check(timezone.now(), ACTIVE_CHECK_INTERVAL)
    for key in due.select_related("domain").defer("private_key")[:500]:  # no private key needed
        try:
            check_dns(key)
        except Exception:
            log.exception("DNS check of DKIM key %s failed", key.record_name)
