"""A message's bytes, read from its row a piece at a time: a 25 MB body never has to be in a
worker's memory at once (the row stays the one place it is stored, on every database)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from django.db.models import BinaryField
from django.db.models.functions import Substr

from .models import Message

CHUNK = 1024 * 1024


def read(message_id: int, start: int, size: int) -> bytes:
    """``size`` bytes of the message from offset ``start`` (fewer at its end)."""
    part = (
        Message.objects.filter(pk=message_id)
        .annotate(part=Substr("raw", start + 1, size, output_field=BinaryField()))
        .values_list("part", flat=True)
        .first()
    )
    if part is None:
        raise Message.DoesNotExist(message_id)
    return bytes(part)


def chunks(message_id: int, start: int = 0, size: int = CHUNK) -> Iterator[bytes]:
    """The message from offset ``start`` to its end, ``size`` bytes at a time."""
    while part := read(message_id, start, size):
        yield part
        if len(part) < size:
            return
        start += len(part)


def whole(message_ids: list[int]) -> dict[int, bytes]:
    """The bytes of each of ``message_ids`` at once, in one query: for small messages only (a
    delivery round reads its small bodies together instead of one query each). Plain SQL: the
    ORM's compiling cost more CPU than the query, and a worker runs it every round."""
    if not message_ids:
        return {}
    table = connection.ops.quote_name(Message._meta.db_table)
    column = connection.ops.quote_name(Message._meta.get_field("raw").column)
    wanted = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, {column} FROM {table} WHERE id IN ({wanted})",  # noqa: S608 - model names
            list(message_ids),
        )
        return {pk: bytes(raw) for pk, raw in cursor.fetchall()}


def append(message_id: int, data: bytes) -> None:
    """Add ``data`` to the end of the message's bytes (while it is being stored)."""
    table = connection.ops.quote_name(Message._meta.db_table)
    column = connection.ops.quote_name(Message._meta.get_field("raw").column)
    # SQLite's || gives text; the cast keeps the bytes a BLOB. PostgreSQL concatenates bytea.
    joined = f"CAST({column} || %s AS BLOB)" if connection.vendor == "sqlite" else f"{column} || %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column} = {joined} WHERE id = %s",  # noqa: S608 - model names
            [data, message_id],
        )
