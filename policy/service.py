"""Saving the policy and propagating effective values to accounts.

Every save (and every OU move that changes inherited values) takes the domain's policy row lock,
bumps the domain's version, writes the new value to the OUs it governs (new accounts start from
their OU's value) and records a PolicyChange listing those OUs. Propagation (``propagation.py``)
then writes the value to their accounts.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import gettext as _

from directory.models import Account, AuditEvent, Domain, OrgUnit

from .inheritance import Effective, UnitSetting, governed_by, resolve, subtree
from .models import OutboundPolicy, PolicyChange, Setting, UnitOverride
from .tasks import propagate_policy


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
    sub_units: int = 0  # how many OUs sit directly below it

    @property
    def set_here(self) -> bool:
        return self.source.pk == self.unit.pk


@dataclass
class TreeNode:
    """An OU of the console's collapsible tree; ``children`` is filled only for an open branch."""

    row: TreeRow
    open: bool
    children: list[TreeNode]
    accounts: int = 0  # filled in by the OU page, which shows them
    more_after: int | None = None  # more sub-OUs follow the one with this pk (show them on demand)
    more: int = 0  # how many

    def shown(self) -> list[TreeNode]:
        """This node and every node below it that the page shows."""
        nodes, stack = [], [self]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(node.children)
        return nodes


# Sub-OUs shown at once when a branch opens; a "show more" button loads the next ones.
CHILDREN_SHOWN = 100


class _Tree:
    """A domain's whole OU tree with effective values, from one query of a few columns per OU.

    Even at thousands of OUs this is cheap; what must not grow is what a page renders, so pages
    show the branches that are open and nothing below a closed one. OrgUnit objects are made only
    for the OUs a page shows.
    """

    def __init__(self, domain: Domain) -> None:
        root_allow = current_policy(domain).allow_user_gateways
        rows = OrgUnit.objects.filter(domain=domain).values_list(
            "id", "parent_id", "name", "policy_override__allow"
        )
        self.domain_id = domain.pk
        self.raw: dict[int, tuple[int | None, str]] = {}
        settings_ = []
        for pk, parent_id, name, allow in rows:
            self.raw[pk] = (parent_id, name)
            settings_.append(UnitSetting(pk, parent_id, root_allow if parent_id is None else allow))
        self.own = {s.id: s for s in settings_}
        self.effective = resolve(settings_)
        self.children: dict[int | None, list[int]] = {}
        for pk in sorted(self.raw, key=lambda pk: (self.raw[pk][1], pk)):
            self.children.setdefault(self.raw[pk][0], []).append(pk)
        self._units: dict[int, OrgUnit] = {}

    def unit(self, pk: int) -> OrgUnit:
        if pk not in self._units:
            parent_id, name = self.raw[pk]
            self._units[pk] = OrgUnit(
                id=pk, parent_id=parent_id, name=name, domain_id=self.domain_id
            )
        return self._units[pk]

    def row(self, pk: int, depth: int) -> TreeRow:
        effective = self.effective[pk]
        unit = self.unit(pk)
        return TreeRow(
            unit=unit,
            depth=depth,
            setting=Setting.of(None if unit.is_root else self.own[pk].allow),
            effective=effective.allow,
            source=self.unit(effective.source_id),
            sub_units=len(self.children.get(pk, [])),
        )

    def depth(self, pk: int) -> int:
        return len(self.ancestors(pk))

    def ancestors(self, pk: int) -> set[int]:
        found, current = set(), self.raw[pk][0]
        while current is not None:
            found.add(current)
            current = self.raw[current][0]
        return found

    def node(self, pk: int, depth: int, open_ids: set[int], after: int | None = None) -> TreeNode:
        """The OU; if open, its sub-OUs by name, CHILDREN_SHOWN at a time (after ``after``)."""
        node = TreeNode(self.row(pk, depth), pk in open_ids, [])
        if not node.open:
            return node
        children = self.children.get(pk, [])
        start = children.index(after) + 1 if after in children else 0
        shown = children[start : start + CHILDREN_SHOWN]
        node.children = [self.node(child, depth + 1, open_ids) for child in shown]
        if start + len(shown) < len(children):
            node.more_after, node.more = shown[-1], len(children) - start - len(shown)
        return node


def policy_tree(domain: Domain) -> list[TreeRow]:
    """The domain's OUs in depth-first order (children by name) with their effective values."""
    tree = _Tree(domain)
    rows: list[TreeRow] = []
    stack = [(root, 0) for root in reversed(tree.children.get(None, []))]
    while stack:
        pk, depth = stack.pop()
        rows.append(tree.row(pk, depth))
        stack.extend((child, depth + 1) for child in reversed(tree.children.get(pk, [])))
    return rows


def tree_root(domain: Domain, show: int | None = None) -> TreeNode:
    """The root OU, open on its children; with ``show``, open down to that OU and on it."""
    tree = _Tree(domain)
    [root] = tree.children[None]
    open_ids = {root}
    if show in tree.raw:
        open_ids |= tree.ancestors(show) | {show}
    return tree.node(root, 0, open_ids)


def tree_branch(unit: OrgUnit, open: bool, after: int | None = None) -> TreeNode:
    """One OU of the tree, open on its children or closed (the htmx toggle of one branch).

    ``after``: its sub-OUs that follow this one (the "show more" of a branch with many).
    """
    tree = _Tree(unit.domain)
    return tree.node(unit.pk, tree.depth(unit.pk), {unit.pk} if open else set(), after)


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
            policy.allow_user_gateways = setting == Setting.ALLOW  # the top OU cannot inherit
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
    OrgUnit.objects.filter(pk__in=governed).update(
        gateways_allowed=change.applied_value, policy_version=change.version
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


def move_account(account: Account, unit: OrgUnit, actor: Account | None = None) -> bool:
    """Put an account in another OU of its domain; it takes that OU's value at once.

    The move is recorded in the domain's audit log; False when the account was there already.
    """
    if unit.domain_id != account.domain_id:
        raise PolicyError(_("An account can only move to an OU of its own domain."))
    with transaction.atomic():
        policy = _locked_policy(unit.domain_id)
        old_unit_id = (
            Account.objects.filter(pk=account.pk).values_list("org_unit_id", flat=True).first()
        )
        if old_unit_id == unit.pk:
            return False
        value = resolve(unit_settings(unit.domain_id, policy.allow_user_gateways))[unit.pk].allow
        Account.objects.filter(pk=account.pk).update(
            org_unit=unit, gateways_allowed=value, policy_version=policy.version
        )
        paths = OrgUnit.objects.paths(unit.domain_id)
        AuditEvent.record(
            unit.domain,
            actor,
            AuditEvent.Action.ACCOUNT_MOVED,
            account.email,
            _("%(old)s → %(new)s")
            % {"old": paths.get(old_unit_id or 0, "?"), "new": paths[unit.pk]},
        )
    account.org_unit, account.gateways_allowed, account.policy_version = (
        unit,
        value,
        policy.version,
    )
    return True
