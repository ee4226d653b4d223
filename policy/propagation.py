"""Propagation: write a recorded change's value to the accounts of the OUs it governs.

It works in primary-key batches with set-based UPDATEs, and only where an account's
``policy_version`` is older than the change's: so changes may run in any order, twice, or resume
half-way, and the newest always wins.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Greatest
from django.utils import timezone

from directory.models import Account
from mailkit.logs import event

from .models import PolicyChange

log = logging.getLogger("sendgate.policy")


def _claim(change_id: int) -> bool:
    """Take the change for this worker unless another holds an unexpired lease (any database)."""
    now = timezone.now()
    lease = timedelta(seconds=settings.SENDGATE_POLICY_LEASE_SECONDS)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return (
        PolicyChange.objects.filter(
            free, pk=change_id, finished_at__isnull=True, superseded=False
        ).update(lease_until=now + lease)
        == 1
    )


def propagate(change_id: int, batch_size: int | None = None) -> None:
    """Write a change's value to the accounts of the OUs it governs, batch by batch.

    Each batch is one UPDATE over a primary-key range, committed together with the progress and
    the resume cursor, so memory stays flat and a crash loses at most one batch of work.
    """
    batch_size = batch_size or settings.SENDGATE_POLICY_BATCH_SIZE
    if not _claim(change_id):
        return
    change = PolicyChange.objects.get(pk=change_id)
    started = time.monotonic()
    event(
        log,
        "policy.propagation_started",
        change=change_id,
        domain=change.domain_id,
        version=change.version,
        value="allow" if change.applied_value else "deny",
        accounts_total=change.accounts_total,
        resumed_after=change.accounts_applied,
    )
    governed = Account.objects.filter(org_unit_id__in=change.unit_ids)
    cursor = change.cursor_pk
    lease = timedelta(seconds=settings.SENDGATE_POLICY_LEASE_SECONDS)
    while True:
        if PolicyChange.objects.filter(pk=change_id, superseded=True).exists():
            event(log, "policy.propagation_superseded", change=change_id)
            return
        remaining = governed.filter(pk__gt=cursor)
        last = remaining.order_by("pk").values_list("pk", flat=True)[batch_size - 1 : batch_size]
        upper = last[0] if last else None
        batch = remaining if upper is None else remaining.filter(pk__lte=upper)
        with transaction.atomic():
            seen = batch_size if upper is not None else batch.count()
            batch.filter(policy_version__lt=change.version).update(
                gateways_allowed=change.applied_value, policy_version=change.version
            )
            # Compare-and-set on the cursor: if another worker took over (our lease ran out while
            # we were stalled) it has moved on; undo this batch's bookkeeping and stop.
            moved = PolicyChange.objects.filter(pk=change_id, cursor_pk=cursor).update(
                cursor_pk=upper if upper is not None else cursor,
                accounts_applied=change.accounts_applied + seen,
                lease_until=timezone.now() + lease,
            )
            if moved != 1:
                transaction.set_rollback(True)
                event(log, "policy.propagation_taken_over", change=change_id)
                return
        change.accounts_applied += seen
        if upper is None:
            break
        cursor = upper
    PolicyChange.objects.filter(pk=change_id, finished_at__isnull=True).update(
        finished_at=timezone.now(),
        lease_until=None,
        accounts_total=Greatest("accounts_total", "accounts_applied"),
        accounts_applied=Greatest("accounts_total", "accounts_applied"),
    )
    event(
        log,
        "policy.propagation_finished",
        change=change_id,
        accounts_applied=change.accounts_applied,
        seconds=round(time.monotonic() - started, 3),
    )


def resumable_change_ids() -> list[int]:
    """Unfinished changes nobody is working on: their task was lost or their worker died."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())
    return list(
        PolicyChange.objects.filter(free, finished_at__isnull=True, superseded=False)
        .order_by("version")
        .values_list("pk", flat=True)
    )
