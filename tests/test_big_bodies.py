"""Big messages leave in chunks, byte for byte as accepted (dots and line endings included)."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from mailkit.smtp_data import DotStuffer
from outbound import delivery
from outbox import bodies
from outbox import queue as outbox_queue
from outbox.models import Message
from outbox.queue import Pending, new_message, queue

from .conftest import server_for


def stuffed_at_once(message: bytes) -> bytes:
    """What aiosmtplib sends for the whole message in one piece: the reference."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


@given(
    st.binary(min_size=1, max_size=300),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=50),
)
def test_dot_stuffing_in_chunks_equals_stuffing_the_whole_message(message, cuts):
    stuffer, out, start, n = DotStuffer(), b"", 0, 0
    while start < len(message):
        size = cuts[n % len(cuts)]
        out += stuffer.feed(message[start : start + size])
        start, n = start + size, n + 1
    assert out + stuffer.finish() == stuffed_at_once(message)


def test_a_body_is_read_from_its_row_in_pieces(people):
    raw = bytes(range(256)) * 10_000  # 2.5 MB, every byte value
    message = queue(people.user, people.user.email, ["b@x.test"], "s", "<m@x>", raw)
    pieces = list(bodies.chunks(message.pk, size=1_000_000))
    assert [len(p) for p in pieces] == [1_000_000, 1_000_000, 560_000]
    assert b"".join(pieces) == raw


def test_a_multi_megabyte_message_arrives_intact_through_a_real_server(
    people, smtp_peer, trust_test_ca
):
    gateway = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    head = b"From: ann@example.com\r\nTo: bob@elsewhere.test\r\nSubject: big\r\n\r\n"
    lines = [b".starts with a dot", b"..two dots", b"plain " * 12, b"."] * 40_000
    raw = head + b"\r\n".join(lines) + b"\r\n"  # about 3.5 MB: several chunks on every layer
    message = queue(people.user, people.user.email, ["bob@elsewhere.test"], "big", "<b@x>", raw)
    delivery.deliver(message.pk)

    assert Message.objects.get(pk=message.pk).state == Message.State.SENT
    [got] = gateway.messages
    assert got.data == raw  # dot-unstuffed by the receiver: exactly what was accepted


def test_messages_stored_together_are_split_into_statements_and_arrive_intact(people, monkeypatch):
    """A group's small messages share INSERTs, a few megabytes of bodies each at most."""
    monkeypatch.setattr(outbox_queue, "STATEMENT_BYTES", 250_000)
    raws = [f"Subject: {n}\r\n\r\n".encode() + bytes([65 + n]) * 100_000 for n in range(7)]
    pending = [
        Pending(new_message(people.user, people.user.email, ["b@x.test"], f"{n}", f"<{n}@t>", raw))
        for n, raw in enumerate(raws)
    ]

    runs = outbox_queue.statements(pending, lambda p: p.message, max_rows=100)
    assert [len(run) for run in runs] == [2, 2, 2, 1]
    one_each = outbox_queue.statements(runs[0] + runs[1], lambda p: p.message, max_rows=1)
    assert [len(run) for run in one_each] == [1] * 4
    outbox_queue.store(pending)

    stored = {m.pk: bytes(m.raw) for m in Message.objects.all()}
    assert [stored[p.message.pk] for p in pending] == raws
