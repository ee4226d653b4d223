"""Hand-written SQL for the hottest queries: the listener's inserts, the delivery worker's loads.

The ORM spends about 1 ms of CPU compiling each query, most of a small batch's cost; the SQL
here is built once per process from the models' own names, and the values go through each
field's converters (JSON, encrypted secrets, ...) both ways, so rows and instances are those the
ORM would write and make.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import Any, cast

import psycopg
from django.db import connection, connections
from django.db.models import Field, Model


class Columns:
    """A model's concrete columns (but ``leave_out``) in a SELECT list under ``alias``, and the
    instance made of a row's slice of values; the columns left out are deferred, as with
    QuerySet.defer()."""

    def __init__(self, model: type[Model], alias: str, leave_out: Sequence[str] = ()) -> None:
        self.model = model
        self.alias = alias
        self.fields: list[Field] = [
            f for f in model._meta.concrete_fields if f.name not in leave_out
        ]
        self.attnames = [f.attname for f in self.fields]
        self.columns = [f.get_col(model._meta.db_table) for f in self.fields]
        # Only the columns that have converters (JSON, encrypted secrets, ...), by position.
        self.converters = [
            (i, column, converters)
            for i, column in enumerate(self.columns)
            if (
                converters := connection.ops.get_db_converters(column)
                + column.get_db_converters(connection)
            )
        ]

        self._sql = ", ".join(f"{alias}.{quote(f.column)}" for f in self.fields)

    @property
    def width(self) -> int:
        return len(self.fields)

    def sql(self) -> str:
        return self._sql

    def build(self, values: Sequence[Any]) -> Model:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        converted = list(values)
        for i, column, converters in self.converters:
            for converter in converters:
                converted[i] = converter(converted[i], column, connection)
        return self.model.from_db(connection.alias, self.attnames, converted)


class Insert:
    """INSERT of new rows of ``model``: every concrete field but the primary key, in order."""

    def __init__(self, model: type[Model]) -> None:
        self.fields: list[Field] = [f for f in model._meta.concrete_fields if not f.primary_key]
        columns = ", ".join(quote(f.column) for f in self.fields)
        self.into = f"INSERT INTO {table(model)} ({columns})"
        self.row = placeholders(self.fields)
        self.typed_row = typed_placeholders(self.fields)
        # Rows one statement may carry: SQLite caps the parameters of a statement.
        self.max_params = connection.features.max_query_params or 65535
        self.max_rows = self.max_params // len(self.fields)

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows, up to and with VALUES."""
        return f"{self.into} VALUES " + ", ".join([f"({self.row})"] * rows)

    def select(self, rows: int) -> str:
        """The statement for ``rows`` rows as ``INSERT ... SELECT`` from VALUES, for a WHERE to
        follow (it stores all of the rows or none), up to and with the FROM."""
        more = f", ({self.row})" * (rows - 1)
        values = f"VALUES ({self.typed_row}){more}"
        return f"{self.into} SELECT * FROM ({values}) AS new_rows"  # noqa: S608 - model names

    def values(self, objects: Sequence[Model]) -> list[Any]:
        """The parameters of ``objects``' rows, each value as the field prepares it to save."""
        # The thread's own connection: each of the proxy's attribute reads looks it up again.
        db = connections[connection.alias]
        return [
            f.get_db_prep_save(f.pre_save(obj, add=True), db)
            for obj in objects
            for f in self.fields
        ]


@cache
def inserting(model: type[Model]) -> Insert:
    """The process's ``Insert`` of ``model``."""
    return Insert(model)


class Update:
    """UPDATE of the fields ``names`` of many rows of ``model`` by one statement: the rows' new
    values and primary keys in a VALUES list. psycopg's executemany sends one statement per row
    in a pipeline, whose bookkeeping cost a delivery worker more CPU than the rows did."""

    def __init__(self, model: type[Model], names: Sequence[str]) -> None:
        self.fields = [cast(Field, model._meta.get_field(name)) for name in names]
        pk = model._meta.pk
        columns = [quote(f.column) for f in self.fields]
        key = quote(pk.column)
        assignments = ", ".join(f"{column} = new_rows.{column}" for column in columns)
        self.head = f"WITH new_rows ({', '.join([*columns, key])}) AS (VALUES "
        self.tail = (
            f") UPDATE {table(model)} SET {assignments} FROM new_rows"  # noqa: S608 - model names
            f" WHERE {table(model)}.{key} = new_rows.{key}"
        )
        self.typed_row = typed_placeholders([*self.fields, pk])
        self.row = placeholders([*self.fields, pk])
        max_params = connection.features.max_query_params or 65535
        self.max_rows = max_params // (len(self.fields) + 1)

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows."""
        return f"{self.head}({self.typed_row})" + f", ({self.row})" * (rows - 1) + self.tail

    def values(self, objects: Sequence[Model]) -> list[Any]:
        """The parameters of ``objects``' rows, each value as the field prepares it to save."""
        db = connections[connection.alias]
        return [
            value
            for obj in objects
            for value in [
                *(f.get_db_prep_save(getattr(obj, f.attname), db) for f in self.fields),
                obj.pk,
            ]
        ]


@cache
def updating(model: type[Model], names: tuple[str, ...]) -> Update:
    """The process's ``Update`` of ``names`` of ``model``."""
    return Update(model, names)


def typed_placeholders(fields: Sequence[Field]) -> str:
    """``%s, %s, ...`` for a first row of VALUES, each cast to its field's type on PostgreSQL.

    A VALUES list in a FROM or WITH does not know its target columns: PostgreSQL would read an
    untyped parameter (a string, a NULL) as text, and refuse text for a date. A first row of
    casts gives each column its type, and the other rows follow it. Lengths are left out, so
    that an over-long value is refused by the INSERT or UPDATE, not cut short by the cast.
    """
    if connection.vendor != "postgresql":
        return placeholders(fields)
    return ", ".join(
        f"CAST(%s AS {re.sub(r'[(][0-9, ]+[)]$', '', f.db_type(connection) or '')})" for f in fields
    )


def select(columns: Columns, where: str, params: Sequence[Any]) -> list[Model]:
    """The rows of ``columns``'s table (aliased as its alias) that match ``where``."""
    sql = f"SELECT {columns.sql()} FROM {table(columns.model)} {columns.alias} WHERE {where}"  # noqa: S608 - names from the model
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [columns.build(row) for row in cursor.fetchall()]


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple]:
    """The rows ``sql`` (with ``%s`` placeholders) returns."""
    with _running(sql, params) as cursor:
        return cursor.fetchall()


def execute(sql: str, params: Sequence[Any]) -> None:
    """Run ``sql`` (with ``%s`` placeholders), which returns no rows."""
    with _running(sql, params):
        pass


@contextmanager
def _running(sql: str, params: Sequence[Any]) -> Iterator[Any]:
    """A cursor that ran ``sql``.

    psycopg reads a statement's ``%s`` placeholders again at every run once it has over 50
    parameters or 4 KB of text (it caches only smaller ones): for the listener's INSERT of a
    group, 7% of its CPU. PostgreSQL's own ``$1, $2, ...`` need no reading, so on
    PostgreSQL the statement goes through psycopg's RawCursor, with Django's error wrapping.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.RawCursor(connection.connection) as cursor:
        cursor.execute(numbered(sql), params)
        yield cursor


@lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``sql`` with ``$1, $2, ...`` for its ``%s`` placeholders (it holds no other ``%``)."""
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError("a statement to number holds a % that is not a placeholder")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    return quote(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    return quote(cast(Field, model._meta.get_field(name)).column)


def placeholders(values: Sequence[object]) -> str:
    """``%s, %s, ...``, one per value (for ``IN (...)``)."""
    return ", ".join(["%s"] * len(values))


def param(model: type[Model], name: str, value: Any) -> Any:
    """``value`` as the database takes it for the field ``name`` (a datetime in UTC, ...)."""
    return cast(Field, model._meta.get_field(name)).get_db_prep_save(value, connection)


def cache_related(instance: Model, name: str, related: Model | None) -> None:
    """Set ``instance.<name>`` as select_related would: no query when it is read."""
    instance._meta.get_field(name).set_cached_value(instance, related)  # type: ignore[union-attr]
