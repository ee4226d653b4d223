"""Propagation: write a recorded change's value to the accounts of the OUs it governs.

It works in batches of account-id ranges with set-based UPDATEs, and only where an account's
``policy_version`` is older than the change's: so changes may run in any order, twice, or resume
half-way, and the newest always wins. On PostgreSQL the account table leaves room on its pages
(policy migration 0004), so these UPDATEs are heap-only and touch none of its indexes.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
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


def next_batch_size(size: int, seconds: float, first: int, target_seconds: float) -> int:
    """The id span of the next batch: double while a batch is quick, back off when one is slow.

    Each batch holds the row locks of its accounts until it commits (a sign-in that records its
    time waits for them), so batches aim at ``target_seconds``; fewer, bigger batches spend less
    on commits and bookkeeping. Never below ``first``; ``target_seconds=0`` keeps that size.
    """
    if seconds < target_seconds / 2:
        return size * 2
    if seconds > target_seconds:
        return max(size // 2, first)
    return size


def propagate(
    change_id: int, batch_size: int | None = None, batch_seconds: float | None = None
) -> None:
    """Write a change's value to the accounts of the OUs it governs, batch by batch.

    A batch is one UPDATE over a range of account ids, committed together with the progress and
    the resume cursor, so memory stays flat and a crash loses at most one batch of work. Ranges
    grow and shrink with how long a batch takes (``next_batch_size``) and need no lookup of
    where one ends; where a batch found nothing to write (at the start, a gap of other domains'
    accounts, the end) one lookup finds the next account to write, or that there is none.
    """
    first = batch_size or settings.SENDGATE_POLICY_BATCH_SIZE
    target = settings.SENDGATE_POLICY_BATCH_SECONDS if batch_seconds is None else batch_seconds
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
    # Accounts at this version or a newer one already (moved meanwhile, or written by a newer
    # change) are left alone; the progress counts the accounts this change wrote.
    stale = Account.objects.filter(
        org_unit_id__in=change.unit_ids, policy_version__lt=change.version
    )
    lease = timedelta(seconds=settings.SENDGATE_POLICY_LEASE_SECONDS)
    cursor, size, batches, applied = change.cursor_pk, first, 0, 0
    while True:
        lower = cursor
        if applied == 0:
            following = stale.filter(pk__gt=cursor).order_by("pk").values_list("pk", flat=True)
            next_pk = following.first()
            if next_pk is None:
                break
            lower = next_pk - 1  # none to write in between: skip the gap
        upper = lower + size
        began = time.monotonic()
        with transaction.atomic():
            applied = stale.filter(pk__gt=lower, pk__lte=upper).update(
                gateways_allowed=change.applied_value, policy_version=change.version
            )
            # Compare-and-set on the cursor: if another worker took over (our lease ran out while
            # we were stalled) it has moved on; if a newer change superseded this one, that
            # change writes these accounts anyway. Either way undo this batch and stop.
            moved = PolicyChange.objects.filter(
                pk=change_id, cursor_pk=cursor, superseded=False
            ).update(
                cursor_pk=upper,
                accounts_applied=F("accounts_applied") + applied,
                lease_until=timezone.now() + lease,
            )
            if moved != 1:
                transaction.set_rollback(True)
        if moved != 1:
            superseded = PolicyChange.objects.filter(pk=change_id, superseded=True).exists()
            event(
                log,
                "policy.propagation_superseded" if superseded else "policy.propagation_taken_over",
                change=change_id,
            )
            return
        change.accounts_applied += applied
        batches += 1
        cursor = upper
        size = next_batch_size(size, time.monotonic() - began, first, target)
    # A change superseded meanwhile stays unfinished, like one that stopped at a batch.
    PolicyChange.objects.filter(pk=change_id, finished_at__isnull=True, superseded=False).update(
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
        batches=batches,
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
