"""Saving the policy and propagating effective values to accounts.

Every save (and every OU move that changes inherited values) takes the domain's policy row lock,
bumps the domain's version and records a PolicyChange listing the OUs it governs and the value
they now have. Propagation writes that value to those OUs' accounts in primary-key batches with
set-based UPDATEs, and only where an account's ``policy_version`` is older than the change's: so
changes may run in any order, twice, or resume half-way, and the newest always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from gateways.models import Account, Domain, OrgUnit

from .inheritance import Effective, UnitSetting, governed_by, resolve, subtree
from .models import OutboundPolicy, PolicyChange, Setting, UnitOverride


class PolicyError(ValueError):
    """A request the tree does not allow (a cycle, inherit at the root, another domain's OU)."""


def current_policy(domain: Domain) -> OutboundPolicy:
    policy, _ = OutboundPolicy.objects.get_or_create(domain=domain)
    return policy


def _locked_policy(domain_id: int) -> OutboundPolicy:
    """The domain's policy row, locked: saves, moves and new accounts of a domain take turns."""
    policy, _ = OutboundPolicy.objects.select_for_update().get_or_create(domain_id=domain_id)
    return policy


def unit_settings(domain_id: int, root_allow: bool) -> list[UnitSetting]:
    """The domain's OU tree with each OU's own setting: one query, no account rows."""
    rows = OrgUnit.objects.filter(domain_id=domain_id).values_list(
        "id", "parent_id", "policy_override__allow"
    )
    return [
        UnitSetting(pk, parent_id, root_allow if parent_id is None else allow)
        for pk, parent_id, allow in rows
    ]


def effective_values(domain: Domain) -> dict[int, Effective]:
    return resolve(unit_settings(domain.pk, current_policy(domain).allow_user_gateways))


@dataclass(frozen=True)
class TreeRow:
    """One line of the policy page: an OU, its depth, its own setting and its value's source."""

    unit: OrgUnit
    depth: int
    setting: Setting
    effective: bool
    source: OrgUnit

    @property
    def set_here(self) -> bool:
        return self.source.pk == self.unit.pk


def policy_tree(domain: Domain) -> list[TreeRow]:
    """The domain's OUs in depth-first order (children by name) with their effective values."""
    units = {u.pk: u for u in OrgUnit.objects.filter(domain=domain).order_by("name")}
    settings_ = unit_settings(domain.pk, current_policy(domain).allow_user_gateways)
    effective = resolve(settings_)
    own = {s.id: s for s in settings_}
    children: dict[int | None, list[OrgUnit]] = {}
    for unit in units.values():
        children.setdefault(unit.parent_id, []).append(unit)
    rows: list[TreeRow] = []
    stack = [(root, 0) for root in reversed(children.get(None, []))]
    while stack:
        unit, depth = stack.pop()
        rows.append(
            TreeRow(
                unit=unit,
                depth=depth,
                setting=Setting.of(None if unit.is_root else own[unit.pk].allow),
                effective=effective[unit.pk].allow,
                source=units[effective[unit.pk].source_id],
            )
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(unit.pk, [])))
    return rows


# --- saving --------------------------------------------------------------------------------------


def set_unit_policy(
    unit: OrgUnit, setting: Setting, actor: Account, note: str = ""
) -> PolicyChange | None:
    """Save one OU's setting (the root's is the domain value), record it and queue propagation.

    Returns None when the setting is unchanged: nothing to record or propagate.
    """
    setting = Setting(setting)
    if unit.is_root and setting == Setting.INHERIT:
        raise PolicyError(_("The top OU has no parent to inherit from: choose allow or deny."))
    with transaction.atomic():
        policy = _locked_policy(unit.domain_id)
        if unit.is_root:
            old = Setting.of(policy.allow_user_gateways)
        else:
            override = UnitOverride.objects.filter(org_unit=unit).first()
            old = Setting.of(override.allow if override else None)
        if old == setting:
            return None
        if unit.is_root:
            policy.allow_user_gateways = setting.allow
        elif setting == Setting.INHERIT:
            UnitOverride.objects.filter(org_unit=unit).delete()
        else:
            UnitOverride.objects.update_or_create(org_unit=unit, defaults={"allow": setting.allow})
        return _record_change(policy, unit, old, setting, actor, note)


def set_domain_policy(domain: Domain, allow: bool, actor: Account) -> PolicyChange | None:
    """Save the value at the domain's root OU (the domain-wide default)."""
    return set_unit_policy(domain.root_unit, Setting.of(allow), actor)


def _record_change(
    policy: OutboundPolicy,
    scope: OrgUnit,
    old: Setting,
    new: Setting,
    actor: Account,
    note: str,
) -> PolicyChange:
    """Bump the version, snapshot what the change governs, and queue its propagation on commit."""
    from .tasks import propagate_policy

    policy.version += 1
    policy.save(update_fields=["allow_user_gateways", "version"])
    units = unit_settings(policy.domain_id, policy.allow_user_gateways)
    governed = governed_by(units, scope.pk)
    # An unfinished older change whose OUs this one covers entirely can stop: every account it
    # would still write gets a newer value from this change anyway.
    for older in PolicyChange.objects.filter(
        domain_id=policy.domain_id, finished_at__isnull=True, superseded=False
    ).only("pk", "unit_ids"):
        if set(older.unit_ids) <= governed:
            PolicyChange.objects.filter(pk=older.pk).update(superseded=True)
    change = PolicyChange.objects.create(
        domain_id=policy.domain_id,
        org_unit=scope,
        actor=actor,
        actor_label=actor.email,
        scope_label=scope.path(),
        old_setting=old,
        new_setting=new,
        note=note,
        version=policy.version,
        applied_value=resolve(units)[scope.pk].allow,
        unit_ids=sorted(governed),
        accounts_total=Account.objects.filter(org_unit_id__in=governed).count(),
    )
    transaction.on_commit(lambda: propagate_policy.delay(change.pk))
    return change


# --- moves ---------------------------------------------------------------------------------------


def move_unit(unit: OrgUnit, new_parent: OrgUnit, actor: Account) -> PolicyChange | None:
    """Put an OU (with everything below it) under another OU of the same domain.

    If the OU inherits and its new parent's value differs, its accounts (and those of sub-OUs that
    inherit through it) need the new value: that is recorded and propagated like a save.
    """
    if unit.is_root:
        raise PolicyError(_("The top OU cannot be moved."))
    with transaction.atomic():
        policy = _locked_policy(unit.domain_id)
        unit = OrgUnit.objects.select_related("parent").get(pk=unit.pk)
        if new_parent.domain_id != unit.domain_id:
            raise PolicyError(_("An OU can only move within its own domain."))
        before = unit_settings(unit.domain_id, policy.allow_user_gateways)
        if new_parent.pk in subtree(before, unit.pk):
            raise PolicyError(_("An OU cannot be moved under itself or one of its own sub-OUs."))
        old_parent = unit.parent
        old_value = resolve(before)[unit.pk].allow
        unit.parent = new_parent
        unit.save(update_fields=["parent"])
        after = unit_settings(unit.domain_id, policy.allow_user_gateways)
        new_value = resolve(after)[unit.pk].allow
        if new_value == old_value:
            return None
        note = _("Moved from %(old)s to %(new)s; the inherited value changed.") % {
            "old": old_parent,
            "new": new_parent,
        }
        return _record_change(
            policy, unit, Setting.of(old_value), Setting.of(new_value), actor, note
        )


def move_account(account: Account, unit: OrgUnit) -> None:
    """Put an account in another OU of its domain; it takes that OU's value at once."""
    if unit.domain_id != account.domain_id:
        raise PolicyError(_("An account can only move to an OU of its own domain."))
    with transaction.atomic():
        policy = _locked_policy(unit.domain_id)
        value = resolve(unit_settings(unit.domain_id, policy.allow_user_gateways))[unit.pk].allow
        Account.objects.filter(pk=account.pk).update(
            org_unit=unit, gateways_allowed=value, policy_version=policy.version
        )
    account.org_unit, account.gateways_allowed, account.policy_version = (
        unit,
        value,
        policy.version,
    )


def birth_values(domain: Domain, unit: OrgUnit) -> tuple[bool, int]:
    """The value and version a new account in ``unit`` starts with: nothing left to catch up."""
    policy = current_policy(domain)
    return resolve(unit_settings(domain.pk, policy.allow_user_gateways))[
        unit.pk
    ].allow, policy.version


# --- propagation ---------------------------------------------------------------------------------


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
    governed = Account.objects.filter(org_unit_id__in=change.unit_ids)
    cursor = change.cursor_pk
    lease = timedelta(seconds=settings.SENDGATE_POLICY_LEASE_SECONDS)
    while True:
        if PolicyChange.objects.filter(pk=change_id, superseded=True).exists():
            return
        remaining = governed.filter(pk__gt=cursor)
        upper = remaining.order_by("pk").values_list("pk", flat=True)[batch_size - 1 : batch_size]
        upper = upper[0] if upper else None
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


def resumable_change_ids() -> list[int]:
    """Unfinished changes nobody is working on: their task was lost or their worker died."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())
    return list(
        PolicyChange.objects.filter(free, finished_at__isnull=True, superseded=False)
        .order_by("version")
        .values_list("pk", flat=True)
    )
