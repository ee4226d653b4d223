"""Saving the policy and propagating its effective value to every account."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gateways.models import Account, Domain

from .models import OutboundPolicy, PolicyChange

BATCH_SIZE = 5000


def current_policy(domain: Domain) -> OutboundPolicy:
    policy, _ = OutboundPolicy.objects.get_or_create(domain=domain)
    return policy


def set_domain_policy(domain: Domain, allow: bool, actor: Account) -> PolicyChange | None:
    """Save the domain-wide value, record the change and queue its propagation.

    Returns None when the value is unchanged (nothing to record or propagate).
    """
    from .tasks import propagate_policy

    with transaction.atomic():
        policy, _ = OutboundPolicy.objects.select_for_update().get_or_create(domain=domain)
        if policy.allow_user_gateways == allow and policy.version > 0:
            return None
        old = policy.allow_user_gateways
        policy.allow_user_gateways = allow
        policy.version += 1
        policy.save(update_fields=["allow_user_gateways", "version"])
        # An older propagation still running stops at its next batch: the newest save wins.
        PolicyChange.objects.filter(domain=domain, finished_at__isnull=True).update(superseded=True)
        change = PolicyChange.objects.create(
            domain=domain,
            org_unit=domain.root_unit,
            actor=actor,
            actor_label=actor.email,
            old_value=old,
            new_value=allow,
            version=policy.version,
            accounts_total=Account.objects.filter(domain=domain).count(),
        )
        transaction.on_commit(lambda: propagate_policy.delay(change.pk))
    return change


def propagate(change_id: int, batch_size: int = BATCH_SIZE) -> None:
    """Apply a change to every account of its domain that has an older version, in batches.

    Idempotent and resumable: an account is done when its policy_version has reached the change's,
    so running this twice, or after a crash half-way, only finishes what is left.
    """
    change = PolicyChange.objects.filter(pk=change_id).first()
    if change is None or change.finished_at or change.superseded:
        return
    pending = Account.objects.filter(domain_id=change.domain_id, policy_version__lt=change.version)
    while True:
        if PolicyChange.objects.filter(pk=change.pk, superseded=True).exists():
            return
        ids = list(pending.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            applied = Account.objects.filter(pk__in=ids, policy_version__lt=change.version).update(
                gateways_allowed=change.new_value, policy_version=change.version
            )
            PolicyChange.objects.filter(pk=change.pk).update(
                accounts_applied=F("accounts_applied") + applied
            )
    PolicyChange.objects.filter(pk=change.pk, finished_at__isnull=True).update(
        finished_at=timezone.now(), accounts_applied=F("accounts_total")
    )


def unfinished_change_ids() -> list[int]:
    return list(
        PolicyChange.objects.filter(finished_at__isnull=True, superseded=False).values_list(
            "pk", flat=True
        )
    )
