"""Resolve the effective policy of every OU from the tree: pure functions, no database.

The root always carries a value (allow or deny); any other OU either inherits from its parent or
overrides with its own value. The policy page, propagation and new accounts all ask these
functions, so "which value applies here, and where does it come from" is answered in one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class UnitSetting:
    """One OU as the resolver sees it. ``allow`` is None when the OU inherits."""

    id: int
    parent_id: int | None
    allow: bool | None


@dataclass(frozen=True)
class Effective:
    allow: bool
    source_id: int  # the OU where the value is set (the unit itself when "set here")


def _children(units: Iterable[UnitSetting]) -> tuple[dict[int | None, list[UnitSetting]], dict]:
    children: dict[int | None, list[UnitSetting]] = defaultdict(list)
    by_id = {}
    for unit in units:
        children[unit.parent_id].append(unit)
        by_id[unit.id] = unit
    return children, by_id


def resolve(units: Iterable[UnitSetting]) -> dict[int, Effective]:
    """Return every OU's effective value; the root (no parent) must carry a value.

    Walks the tree iteratively (deep trees must not hit the recursion limit); an OU unreachable
    from the root (which the models forbid) is left out rather than guessed.
    """
    children, _ = _children(units)
    roots = children.get(None, [])
    result: dict[int, Effective] = {}
    stack: list[tuple[UnitSetting, Effective | None]] = [(root, None) for root in roots]
    while stack:
        unit, inherited = stack.pop()
        if unit.allow is not None:
            effective = Effective(unit.allow, unit.id)
        elif inherited is not None:
            effective = inherited
        else:
            raise ValueError(f"root unit {unit.id} must be set to allow or deny")
        result[unit.id] = effective
        stack.extend((child, effective) for child in children.get(unit.id, []))
    return result


def governed_by(units: Iterable[UnitSetting], scope_id: int) -> set[int]:
    """Return the scope and every descendant whose value comes through the scope.

    These are the OUs whose accounts a save at ``scope_id`` can change; a sub-OU that overrides
    (and everything below it) keeps its own value and is left out.
    """
    children, by_id = _children(units)
    if scope_id not in by_id:
        return set()
    governed = {scope_id}
    stack = list(children.get(scope_id, []))
    while stack:
        unit = stack.pop()
        if unit.allow is None:
            governed.add(unit.id)
            stack.extend(children.get(unit.id, []))
    return governed


def subtree(units: Iterable[UnitSetting], unit_id: int) -> set[int]:
    """Return the OU and all its descendants (a move must not put an OU under one of these)."""
    children, _ = _children(units)
    found = {unit_id}
    stack = list(children.get(unit_id, []))
    while stack:
        unit = stack.pop()
        found.add(unit.id)
        stack.extend(children.get(unit.id, []))
    return found
