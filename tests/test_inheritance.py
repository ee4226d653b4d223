"""The pure resolution of effective values over an OU tree (no database)."""

from __future__ import annotations

import pytest

from policy.inheritance import Effective, UnitSetting, governed_by, resolve, subtree


def chain(depth: int, root_allow: bool, overrides: dict[int, bool] | None = None):
    """A straight line of OUs 1 (root) → 2 → … → depth, with the given overrides."""
    overrides = overrides or {}
    units = [UnitSetting(1, None, root_allow)]
    units += [UnitSetting(n, n - 1, overrides.get(n)) for n in range(2, depth + 1)]
    return units


def test_every_ou_of_a_deep_tree_inherits_the_root_value():
    effective = resolve(chain(5000, root_allow=True))  # deeper than the recursion limit
    assert len(effective) == 5000
    assert effective[5000] == Effective(allow=True, source_id=1)


def test_an_override_governs_its_subtree_until_the_next_override():
    effective = resolve(chain(10, root_allow=False, overrides={4: True, 8: False}))
    assert [effective[n].allow for n in range(1, 11)] == [False] * 3 + [True] * 4 + [False] * 3
    assert effective[3].source_id == 1
    assert effective[4].source_id == 4  # set here
    assert effective[7].source_id == 4  # inherited from OU 4
    assert effective[10].source_id == 8


def test_siblings_inherit_independently():
    units = [
        UnitSetting(1, None, False),
        UnitSetting(2, 1, True),
        UnitSetting(3, 1, None),
        UnitSetting(4, 2, None),
        UnitSetting(5, 3, None),
    ]
    effective = resolve(units)
    assert {n: e.allow for n, e in effective.items()} == {
        1: False,
        2: True,
        3: False,
        4: True,
        5: False,
    }


def test_reverting_to_inherit_takes_the_parent_value_again():
    assert resolve(chain(4, True, {3: False}))[4] == Effective(False, 3)
    assert resolve(chain(4, True))[4] == Effective(True, 1)


def test_a_root_without_a_value_is_an_error():
    with pytest.raises(ValueError, match="root unit"):
        resolve([UnitSetting(1, None, None)])


def test_governed_by_stops_at_sub_ous_that_override():
    units = chain(6, True, {4: False})
    assert governed_by(units, 1) == {1, 2, 3}
    assert governed_by(units, 4) == {4, 5, 6}
    assert governed_by(units, 2) == {2, 3}


def test_governed_by_an_inheriting_scope_includes_the_scope_itself():
    units = [UnitSetting(1, None, True), UnitSetting(2, 1, None), UnitSetting(3, 2, None)]
    assert governed_by(units, 2) == {2, 3}
    assert governed_by(units, 99) == set()


def test_subtree_lists_every_descendant_whatever_its_setting():
    units = chain(5, True, {3: False})
    assert subtree(units, 2) == {2, 3, 4, 5}
    assert subtree(units, 5) == {5}
