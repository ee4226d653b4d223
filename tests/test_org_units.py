"""OU overrides, moves and new accounts: which accounts a save touches, and with which value."""

from __future__ import annotations

import pytest

from directory.models import Account, OrgUnit
from policy.models import PolicyChange, Setting
from policy.propagation import propagate
from policy.service import (
    PolicyError,
    move_account,
    move_unit,
    policy_tree,
    set_domain_policy,
    set_unit_policy,
)

from .conftest import PASSWORD


@pytest.fixture
def tree(people):
    """example.com → Sales → EMEA, and example.com → Support; two accounts in each."""
    root = people.domain.root_unit
    sales = OrgUnit.objects.create(domain=people.domain, parent=root, name="Sales")
    emea = OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")
    support = OrgUnit.objects.create(domain=people.domain, parent=root, name="Support")
    for unit in (sales, emea, support):
        for n in range(2):
            Account.objects.create_user(
                f"{unit.name.lower()}{n}@example.com", PASSWORD, org_unit=unit
            )
    return root, sales, emea, support


def allowed(unit: OrgUnit) -> set[bool]:
    return set(Account.objects.filter(org_unit=unit).values_list("gateways_allowed", flat=True))


def save(unit, setting, people):
    change = set_unit_policy(unit, setting, people.admin)
    propagate(change.pk, batch_size=2)
    change.refresh_from_db()
    return change


def test_override_on_an_ou_reaches_its_sub_ous_and_nothing_else(people, tree):
    root, sales, emea, support = tree
    change = save(sales, Setting.ALLOW, people)

    assert allowed(sales) == allowed(emea) == {True}
    assert allowed(support) == allowed(root) == {False}
    assert change.accounts_total == change.accounts_applied == 4
    assert set(change.unit_ids) == {sales.pk, emea.pk}
    assert change.finished_at is not None


def test_root_change_leaves_sub_ous_that_override_untouched(people, tree):
    root, sales, emea, support = tree
    save(sales, Setting.DENY, people)
    before = set(
        Account.objects.filter(org_unit__in=[sales, emea]).values_list("pk", "policy_version")
    )

    change = save(root, Setting.ALLOW, people)

    assert allowed(root) == allowed(support) == {True}
    assert allowed(sales) == allowed(emea) == {False}
    after = set(
        Account.objects.filter(org_unit__in=[sales, emea]).values_list("pk", "policy_version")
    )
    assert after == before  # not even re-written
    assert change.accounts_total == 4  # admin, ann and the two in Support


def test_reverting_an_override_to_inherit_takes_the_parent_value_again(people, tree):
    root, sales, emea, _support = tree
    save(root, Setting.ALLOW, people)
    save(sales, Setting.DENY, people)
    assert allowed(emea) == {False}

    change = save(sales, Setting.INHERIT, people)

    assert allowed(sales) == allowed(emea) == {True}
    assert (change.old_setting, change.new_setting, change.applied_value) == (
        "deny",
        "inherit",
        True,
    )
    rows = {row.unit.name: row for row in policy_tree(people.domain)}
    assert rows["EMEA"].source == root and not rows["EMEA"].set_here


def test_policy_tree_shows_where_each_value_is_set(people, tree):
    root, sales, emea, support = tree
    set_unit_policy(sales, Setting.ALLOW, people.admin)
    rows = policy_tree(people.domain)
    assert [(r.unit.name, r.depth) for r in rows] == [
        ("example.com", 0),
        ("Sales", 1),
        ("EMEA", 2),
        ("Support", 1),
    ]
    by_name = {r.unit.name: r for r in rows}
    assert by_name["Sales"].set_here and by_name["Sales"].effective
    assert by_name["EMEA"].source == sales and by_name["EMEA"].effective
    assert by_name["Support"].source == root and not by_name["Support"].effective


def test_the_root_cannot_inherit(people, tree):
    with pytest.raises(PolicyError):
        set_unit_policy(tree[0], Setting.INHERIT, people.admin)


def test_two_quick_saves_on_different_ous_both_apply_whatever_the_order(people, tree):
    root, sales, emea, support = tree
    first = set_unit_policy(root, Setting.ALLOW, people.admin)
    second = set_unit_policy(sales, Setting.DENY, people.admin)
    propagate(second.pk)
    propagate(first.pk)  # the older, wider change arrives late
    assert allowed(support) == {True}
    assert allowed(sales) == allowed(emea) == {False}


def test_a_newer_save_covering_an_older_one_supersedes_it(people, tree):
    _root, sales, _emea, _support = tree
    first = set_unit_policy(sales, Setting.ALLOW, people.admin)
    second = set_unit_policy(sales, Setting.DENY, people.admin)
    first.refresh_from_db()
    assert first.superseded and not second.superseded
    propagate(first.pk)
    propagate(second.pk)
    assert allowed(sales) == {False}


def test_moving_an_account_gives_it_the_new_ous_value_at_once(people, tree):
    _root, sales, _emea, support = tree
    save(sales, Setting.ALLOW, people)
    ann = people.user
    move_account(ann, sales)
    ann.refresh_from_db()
    assert ann.org_unit == sales and ann.gateways_allowed
    move_account(ann, support)
    ann.refresh_from_db()
    assert not ann.gateways_allowed
    with pytest.raises(PolicyError):
        move_account(ann, people.outsider.org_unit)


def test_moving_an_inheriting_ou_under_an_override_propagates_the_new_value(people, tree):
    _root, sales, emea, support = tree
    save(sales, Setting.ALLOW, people)
    assert allowed(emea) == {True}

    change = move_unit(emea, support, people.admin)
    propagate(change.pk)

    assert allowed(emea) == {False}
    assert "Moved from Sales to Support" in change.note
    assert PolicyChange.objects.filter(org_unit=emea).count() == 1


def test_an_ou_cannot_move_under_itself_or_its_own_sub_ou(people, tree):
    _root, sales, emea, _support = tree
    with pytest.raises(PolicyError):
        move_unit(sales, emea, people.admin)
    with pytest.raises(PolicyError):
        move_unit(sales, sales, people.admin)
    with pytest.raises(PolicyError):
        move_unit(sales, people.outsider.org_unit, people.admin)


def test_a_move_that_keeps_the_value_records_nothing(people, tree):
    _root, sales, emea, support = tree
    assert move_unit(emea, support, people.admin) is None
    assert not PolicyChange.objects.exists()


def test_new_account_is_born_with_its_ous_effective_value(people, tree):
    _root, sales, emea, _support = tree
    set_domain_policy(people.domain, False, people.admin)
    change = set_unit_policy(sales, Setting.ALLOW, people.admin)
    newcomer = Account.objects.create_user("new@example.com", PASSWORD, org_unit=emea)
    assert newcomer.gateways_allowed and newcomer.policy_version == change.version
