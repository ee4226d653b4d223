"""PostgreSQL: claim due messages and load what their batch needs, in one statement.

A small batch's fixed cost was mostly the ORM compiling its queries (about 1 ms of CPU each):
BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, COMMIT, then the load of the claimed
messages with their accounts and domains. Here one UPDATE ... RETURNING in autocommit claims
the rows and brings them back joined to their account and domain, and its SQL is built once
per process from the models' own names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model

from directory.models import Account, Domain
from outbox.models import Message


class _Columns:
    """A model's concrete columns (but ``leave_out``) in one SELECT list, and the instance a
    row's slice of values makes, converted as the ORM would convert them."""

    def __init__(self, model: type[Model], alias: str, leave_out: Sequence[str] = ()) -> None:
        self.model = model
        self.alias = alias
        self.fields: list[Field] = [
            f for f in model._meta.concrete_fields if f.name not in leave_out
        ]
        self.attnames = [f.attname for f in self.fields]
        self.columns = [f.get_col(model._meta.db_table) for f in self.fields]
        self.converters = [
            connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            for column in self.columns
        ]

    def sql(self) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)

    def build(self, values: Sequence[Any]) -> Model:
        converted = []
        for column, converters, value in zip(self.columns, self.converters, values, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            converted.append(value)
        # Columns left out are deferred, as with QuerySet.defer().
        return self.model.from_db(connection.alias, self.attnames, converted)


@cache
def _statement() -> tuple[str, _Columns, _Columns, _Columns]:
    """The claim statement and the columns it returns (the same for the life of the process)."""
    quote = connection.ops.quote_name
    message = _Columns(Message, "claimed", leave_out=["raw"])  # bodies are read round by round
    account = _Columns(Account, "account")
    domain = _Columns(Domain, "domain")
    table = quote(Message._meta.db_table)

    def column(name: str, model: type[Model] = Message) -> str:
        return quote(cast(Field, model._meta.get_field(name)).column)

    state, due_at, attempts = column("state"), column("next_attempt_at"), column("attempt_count")
    returned = ", ".join(quote(f.column) for f in message.fields)
    sql = (
        f"WITH claimed AS ("  # noqa: S608 - every name comes from the models
        f" UPDATE {table} SET {state} = %s, {column('lease_until')} = %s,"
        f" {attempts} = {attempts} + 1"
        f" WHERE {quote('id')} IN ("
        f"  SELECT {quote('id')} FROM {table} WHERE {state} IN (%s, %s) AND {due_at} <= %s"
        f"  ORDER BY {due_at} LIMIT %s FOR UPDATE SKIP LOCKED)"
        f" RETURNING {returned}, LENGTH({column('raw')}) AS raw_size)"
        f" SELECT {message.sql()}, claimed.raw_size, {account.sql()}, {domain.sql()}"
        f" FROM claimed"
        f" JOIN {quote(Account._meta.db_table)} account"
        f"  ON account.{quote('id')} = claimed.{column('account')}"
        f" LEFT JOIN {quote(Domain._meta.db_table)} domain"
        f"  ON domain.{quote('id')} = account.{column('domain', Account)}"
        f" ORDER BY claimed.{quote('id')}"
    )
    return sql, message, account, domain


def claim_due(limit: int, now: datetime, lease_until: datetime) -> list[Message]:
    """Take up to ``limit`` due messages, oldest due first, as ``delivery.claim_due`` does (state
    sending, a lease, one more attempt counted); return them by id, each with its account and
    the account's domain loaded, and ``raw_size`` (bytes) set, its body left in the database.

    FOR UPDATE SKIP LOCKED in the subquery: concurrent workers split the due rows, and a row
    another transaction claimed meanwhile is re-checked against the WHERE and left out.
    """
    sql, message_columns, account_columns, domain_columns = _statement()
    lease = Message._meta.get_field("lease_until").get_db_prep_save(lease_until, connection)
    due = Message._meta.get_field("next_attempt_at").get_db_prep_save(now, connection)
    params = [
        Message.State.SENDING,
        lease,
        Message.State.QUEUED,
        Message.State.DEFERRED,
        due,
        limit,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    first_account = len(message_columns.fields) + 1  # after the message and its raw_size
    first_domain = first_account + len(account_columns.fields)
    messages = []
    for row in rows:
        message = cast(Message, message_columns.build(row[: first_account - 1]))
        message.raw_size = row[first_account - 1]  # type: ignore[attr-defined]
        account = account_columns.build(row[first_account:first_domain])
        domain_row = row[first_domain:]
        domain = domain_columns.build(domain_row) if domain_row[0] is not None else None
        _cache_related(account, "domain", domain)
        _cache_related(message, "account", account)
        messages.append(message)
    return messages


def _cache_related(instance: Model, name: str, related: Model | None) -> None:
    """Set ``instance.<name>`` as select_related would: no query when it is read."""
    instance._meta.get_field(name).set_cached_value(instance, related)  # type: ignore[union-attr]
