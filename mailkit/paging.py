"""Keyset pagination and capped counts: lists that cost the same on their first and last page.

``OFFSET 499950`` reads and throws away half a million rows; a keyset page starts where the last
row shown left off (``WHERE (created_at, id) < (...)``), so with an index on the ordering keys
every page, the last one too, reads only the rows it shows.

Use::

    page = keyset_page(messages, request.GET, order=("-created_at", "-id"), size=50)
    # page.rows: the rows to show; page.first_url / previous_url / next_url / last_url:
    # "?..." links (None where there is no such page), keeping the request's other parameters.

    {% include "partials/pager.html" with page=page %}
        (links: Newest · Newer · Older · Oldest)
    {% include "partials/pager.html" with page=page by_name=True %}
        (links: First · Previous · Next · Last, for lists by name)

``order`` names the keys, most significant first, each ``"-field"`` for descending; the last key
must be unique (``id``) so that no two rows tie. The keys must be non-null columns, and an index
on (the list's filter columns, then the keys in the same directions) makes each page an index range
scan. The cursor in the URL (``after=`` / ``before=``) holds the keys of the row the page starts
after; ``last=1`` asks for the end of the list. A cursor that does not parse shows the first page.

``capped_count(queryset)`` counts up to a cap (10,000) and says whether there are more, so a
header reads "more than 10,000" instead of counting a million rows on every request.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, ValidationError
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import QueryDict

PAGE_SIZE = 50
COUNT_CAP = 10_000
_CURSOR_PARAMS = ("after", "before", "last")


@dataclass(frozen=True)
class KeysetPage:
    rows: list[Any]
    first_url: str | None  # the start of the list (None: this is the start)
    previous_url: str | None  # the rows just before these in the list's order
    next_url: str | None  # the rows just after these
    last_url: str | None  # the end of the list (None: this is the end)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_other_pages(self) -> bool:
        return bool(self.previous_url or self.next_url)


@dataclass(frozen=True)
class CappedCount:
    count: int  # exact when not ``more``; else the cap
    more: bool  # more rows than ``count``


def capped_count(queryset: QuerySet, cap: int | None = None) -> CappedCount:
    """Count the rows up to ``cap`` (default COUNT_CAP) with one ``COUNT(*)`` over a LIMIT."""
    cap = COUNT_CAP if cap is None else cap
    n = queryset.order_by().values("pk")[: cap + 1].count()
    return CappedCount(min(n, cap), n > cap)


def capped_counts(querysets: dict[str, QuerySet], cap: int | None = None) -> dict[str, CappedCount]:
    """Several capped counts in one round trip: one SELECT of a scalar subquery per queryset.

    For a page that shows many counts (the delivery log's counters): each is still an index range
    read up to the cap, but the page waits for the database once instead of once per count.
    """
    cap = COUNT_CAP if cap is None else cap
    parts, params, names, db = [], [], [], "default"
    for name, queryset in querysets.items():
        limited = queryset.order_by().values("pk")[: cap + 1]
        db = limited.db
        try:
            sql, query_params = limited.query.get_compiler(using=db).as_sql()
        except EmptyResultSet:  # e.g. pk__in=[]: nothing to count
            continue
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) capped)")  # noqa: S608 - compiled by Django, values as params
        params.extend(query_params)
        names.append(name)
    counts = dict.fromkeys(querysets, 0)
    if parts:
        with connections[db].cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(parts), params)
            counts.update(zip(names, cursor.fetchone(), strict=True))
    return {name: CappedCount(min(n, cap), n > cap) for name, n in counts.items()}


def _split(order: tuple[str, ...]) -> list[tuple[str, bool]]:
    return [(key.lstrip("-"), key.startswith("-")) for key in order]


def _encode(row: Any, keys: list[tuple[str, bool]]) -> str:
    values = []
    for name, _descending in keys:
        value = getattr(row, name)
        values.append(value.isoformat() if hasattr(value, "isoformat") else value)
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, queryset: QuerySet, keys: list[tuple[str, bool]]) -> list[Any] | None:
    """The cursor's key values as the fields' Python types, or None if it does not parse."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(values, list) or len(values) != len(keys):
        return None
    parsed = []
    for (name, _descending), value in zip(keys, values, strict=True):
        if not isinstance(value, str | int | float):
            return None
        try:
            field = queryset.model._meta.get_field(name)
            parsed.append(field.to_python(value))
        except (FieldDoesNotExist, ValidationError, TypeError, ValueError):
            return None
    return parsed


def _beyond(keys: list[tuple[str, bool]], values: list[Any], forward: bool) -> Q:
    """Rows strictly after ``values`` in the list's order (before them when not ``forward``)."""

    def lookup(descending: bool, inclusive: bool) -> str:
        upwards = descending != forward  # walking towards larger values?
        return ("gte" if inclusive else "gt") if upwards else ("lte" if inclusive else "lt")

    condition = Q()
    for i, (name, descending) in enumerate(keys):
        tie = {key: value for (key, _), value in zip(keys[:i], values[:i], strict=True)}
        condition |= Q(**tie, **{f"{name}__{lookup(descending, False)}": values[i]})
    # The same bound on the first key alone, ANDed in: an index range condition the planner can
    # start the scan from (the OR above alone would be a filter over every row).
    first, descending = keys[0]
    return condition & Q(**{f"{first}__{lookup(descending, True)}": values[0]})


def _url(params: QueryDict, **cursor: str) -> str:
    query = params.copy()
    for name in _CURSOR_PARAMS:
        query.pop(name, None)
    for name, value in cursor.items():
        query[name] = value
    return "?" + query.urlencode()


def keyset_page(
    queryset: QuerySet,
    params: QueryDict,
    *,
    order: tuple[str, ...] = ("-created_at", "-id"),
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """One page of ``queryset`` in ``order``, chosen by the cursor in ``params`` (request.GET).

    Two queries at most whatever the page: the rows (one more than ``size`` tells whether the list
    goes on) and, on a page reached backwards, nothing else. See the module docstring.
    """
    keys = _split(order)
    reverse = tuple(("" if key.startswith("-") else "-") + key.lstrip("-") for key in order)
    after = _decode(params.get("after", ""), queryset, keys) if params.get("after") else None
    before = _decode(params.get("before", ""), queryset, keys) if params.get("before") else None
    at_end = params.get("last") == "1"

    if before is not None:
        earlier = queryset.filter(_beyond(keys, before, forward=False)).order_by(*reverse)
        rows = list(earlier[: size + 1])
        more_before = len(rows) > size
        rows = rows[:size][::-1]
        more_after = True  # the cursor came from a row after these
    elif at_end:
        rows = list(queryset.order_by(*reverse)[: size + 1])
        more_before = len(rows) > size
        rows = rows[:size][::-1]
        more_after = False
    else:
        page = queryset.order_by(*order)
        if after is not None:
            page = page.filter(_beyond(keys, after, forward=True))
        rows = list(page[: size + 1])
        more_after = len(rows) > size
        rows = rows[:size]
        more_before = after is not None
    if not rows:
        # Nothing here (the rows the cursor pointed at are gone): offer the start of the list.
        return KeysetPage([], _url(params) if after or before else None, None, None, None)
    return KeysetPage(
        rows=rows,
        first_url=_url(params) if more_before else None,
        previous_url=_url(params, before=_encode(rows[0], keys)) if more_before else None,
        next_url=_url(params, after=_encode(rows[-1], keys)) if more_after else None,
        last_url=_url(params, last="1") if more_after else None,
    )
