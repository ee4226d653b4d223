"""Times read back from the database are the instants stored, as aware datetimes in UTC, whether
the ORM or the delivery worker's claim reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from outbound import delivery
from outbox.models import Message

from .test_due_messages import message

INSTANTS = [
    datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),  # just before Europe's clocks go forward
    datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Amsterdam")),  # summer time's last hour
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=ZoneInfo("Pacific/Kiritimati")),  # UTC+14
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("instant", INSTANTS, ids=str)
def test_a_claimed_message_carries_the_instants_it_was_stored_with(people, instant):
    stored = message(people.user, "queued", -1)
    Message.objects.filter(pk=stored.pk).update(created_at=instant, delay_warned_at=instant)

    read = Message.objects.get(pk=stored.pk)
    [claimed] = delivery.claim_due(10).messages or Message.objects.filter(pk=stored.pk)
    for value in (read.created_at, read.delay_warned_at, claimed.created_at):
        # In UTC first: Python never finds an ambiguous local time equal to another zone's.
        assert value == instant.astimezone(UTC) and value.tzinfo is UTC
    assert claimed.account.date_joined.tzinfo is UTC


def test_postgresql_timestamps_are_read_by_psycopgs_c_loader(people):
    """A guard on the speed-up, not on a result: Django's own loader parses in Python."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite returns text that Django parses; there is no loader to choose")
    from psycopg.pq import Format

    from outbox.timestamps import HAS_C_LOADER, TIMESTAMPTZ_OID, UtcTimestamptzLoader

    assert HAS_C_LOADER, "psycopg[binary] is what the lock file installs"
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert loader is UtcTimestamptzLoader
