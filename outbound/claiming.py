"""PostgreSQL: claim due messages and load what their batch needs, in one statement.

A small batch's fixed cost was mostly its round trips and the ORM compiling their queries:
BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, COMMIT, then the load of the claimed
messages with their accounts and domains. Here one UPDATE ... RETURNING in autocommit claims
the rows and brings them back joined to their account and domain (see outbox.rows).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import cast

from django.db import connection
from django.db.models import Model

from directory.models import Account, Domain
from outbox.models import Message
from outbox.rows import Columns, cache_related, column, param, quote, table


@cache
def _statement() -> tuple[str, Columns, Columns, Columns]:
    """The claim statement and the columns it returns (the same for the life of the process)."""
    message = Columns(Message, "claimed", leave_out=["raw"])  # bodies are read round by round
    account = Columns(Account, "account")
    domain = Columns(Domain, "domain")
    messages = table(Message)
    state, due_at, attempts = (
        column(Message, name) for name in ("state", "next_attempt_at", "attempt_count")
    )
    returned = ", ".join(quote(f.column) for f in message.fields)
    sql = (
        f"WITH claimed AS ("  # noqa: S608 - every name comes from the models
        f" UPDATE {messages} SET {state} = %s, {column(Message, 'lease_until')} = %s,"
        f" {attempts} = {attempts} + 1"
        f" WHERE {quote('id')} IN ("
        f"  SELECT {quote('id')} FROM {messages} WHERE {state} IN (%s, %s) AND {due_at} <= %s"
        f"  ORDER BY {due_at} LIMIT %s FOR UPDATE SKIP LOCKED)"
        f" RETURNING {returned}, LENGTH({column(Message, 'raw')}) AS raw_size)"
        f" SELECT {message.sql()}, claimed.raw_size, {account.sql()}, {domain.sql()}"
        f" FROM claimed"
        f" JOIN {table(Account)} account"
        f"  ON account.{quote('id')} = claimed.{column(Message, 'account')}"
        f" LEFT JOIN {table(Domain)} domain"
        f"  ON domain.{quote('id')} = account.{column(Account, 'domain')}"
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
    lease = param(Message, "lease_until", lease_until)
    due = param(Message, "next_attempt_at", now)
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
    first_account = message_columns.width + 1  # after the message and its raw_size
    first_domain = first_account + account_columns.width
    # A batch holds a few senders' messages: each account and domain is built once and shared
    # by its messages, as prefetch_related would (building them took a third of a claim's CPU).
    accounts: dict[int, Model] = {}
    domains: dict[int | None, Model | None] = {None: None}
    messages = []
    for row in rows:
        message = cast(Message, message_columns.build(row[: first_account - 1]))
        message.raw_size = row[first_account - 1]  # type: ignore[attr-defined]
        account = accounts.get(message.account_id)
        if account is None:
            account = accounts[message.account_id] = account_columns.build(
                row[first_account:first_domain]
            )
            domain_id = cast(Account, account).domain_id
            if domain_id not in domains:
                domains[domain_id] = domain_columns.build(row[first_domain:])
            cache_related(account, "domain", domains[domain_id])
        cache_related(message, "account", account)
        messages.append(message)
    return messages
