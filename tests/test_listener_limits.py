"""One sender cannot take every session of the submission listener."""

from __future__ import annotations

import smtplib
from base64 import b64encode

import pytest

from outbound.credentials import create_app_password
from outbox.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(people):
    _app, password = create_app_password(people.user, "Laptop")
    people.user.app_password = password
    return people.user


def greeting(server) -> tuple[int, bytes, smtplib.SMTP]:
    client = smtplib.SMTP(timeout=10)
    code, text = client.connect(server.host, server.port)
    return code, text, client


def test_sessions_past_the_per_address_cap_get_421_and_a_freed_slot_is_reused(
    start_submission,
):
    server = start_submission(max_sessions_per_ip=2)
    first, second = greeting(server), greeting(server)
    assert [first[0], second[0]] == [220, 220]
    code, text, _client = greeting(server)
    assert (code, text) == (421, b"4.7.0 Too many connections from your address; try again later")

    first[2].quit()
    code, _text, client = greeting(server)
    assert code == 220
    for open_client in (second[2], client):
        open_client.quit()


def test_sessions_past_the_per_account_cap_are_refused_at_login(start_submission, ann):
    server = start_submission(max_sessions_per_account=1)
    first = server.connect()
    first.login(ann.email, ann.app_password)
    second = server.connect()
    blob = b64encode(f"\0{ann.email}\0{ann.app_password}".encode()).decode()
    code, text = second.docmd("AUTH", f"PLAIN {blob}")
    assert (code, text) == (421, b"4.7.0 Too many sessions for this account; try again later")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        second.noop()  # 421: the listener closed the session

    first.quit()
    third = server.connect()
    assert third.login(ann.email, ann.app_password)[0] == 235
    third.quit()


def test_with_debug_on_the_listener_keeps_no_query_and_so_no_message_body(
    start_submission, ann, settings
):
    import asyncio

    from django.db import connection

    from outbound.listener import in_db

    settings.DEBUG = True  # the demo runs with DJANGO_DEBUG=1
    server = start_submission()
    client = server.connect()
    client.login(ann.email, ann.app_password)
    body = b"From: ann@example.com\r\nTo: bob@elsewhere.test\r\nSubject: big\r\n\r\n"
    body += b"x" * 70 + b"\r\n"
    for _ in range(3):
        client.sendmail("ann@example.com", ["bob@elsewhere.test"], body * 100)
    client.quit()

    # Ask the listener's database thread (sync_to_async's one thread) what it keeps.
    logged = asyncio.run(in_db(lambda: len(connection.queries_log)))
    assert logged == 0


def big(megabytes: float) -> bytes:
    head = b"From: ann@example.com\r\nTo: bob@elsewhere.test\r\nSubject: big\r\n\r\n"
    lines = [b".a line that starts with a dot", b"QUJD" * 19, b"..", b""]
    body = b"\r\n".join(lines) + b"\r\n"
    return head + body * int(megabytes * 1024 * 1024 / len(body))


def test_a_message_bigger_than_memory_allows_is_spooled_and_stored_whole(
    start_submission, ann, settings
):
    settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
    server = start_submission(max_message_bytes=10 * 1024 * 1024)
    client = server.connect()
    client.login(ann.email, ann.app_password)
    data = big(9)  # past the listener's 1 MiB in memory and several 4 MiB chunks of the row
    client.sendmail("ann@example.com", ["bob@elsewhere.test"], data)
    client.quit()

    [message] = Message.objects.all()
    raw = bytes(message.raw)
    assert raw.startswith(b"Received: from ")
    assert raw.endswith(data) and len(raw) - len(data) < 500  # only the Received: line added
    assert message.subject == "big"


def test_a_message_over_the_size_limit_is_refused_and_nothing_is_stored(
    start_submission, ann, settings
):
    settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
    server = start_submission(max_message_bytes=2 * 1024 * 1024)
    client = server.connect()
    client.login(ann.email, ann.app_password)
    client.mail("ann@example.com")  # no SIZE= announced: the listener counts while reading
    client.rcpt("bob@elsewhere.test")
    assert client.data(big(3))[0] == 552
    client.sendmail("ann@example.com", ["bob@elsewhere.test"], big(1))  # the session goes on
    client.quit()
    assert Message.objects.count() == 1
