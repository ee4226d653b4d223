"""A message's bytes, read from its row a piece at a time: a 25 MB body never has to be in a
worker's memory at once (the row stays the one place it is stored, on every database)."""

from __future__ import annotations

from collections.abc import Iterator

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
