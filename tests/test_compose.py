"""The compose page: From picker with the account's addresses, attachments, the daily limit."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import SMTP as SMTP_POLICY

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from outbound.intake import Attachment, accept_message
from outbox.models import Message

from .conftest import PASSWORD


@pytest.fixture
def ann_client(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    return client


def test_compose_sends_attachments_as_a_multipart_message(ann_client):
    files = [
        SimpleUploadedFile("report.pdf", b"%PDF-1.4 fake", content_type="application/pdf"),
        SimpleUploadedFile("Grüße.txt", "Schöne Grüße".encode(), content_type="text/plain"),
    ]
    page = ann_client.get(reverse("compose")).content.decode()
    assert 'enctype="multipart/form-data"' in page
    ann_client.post(
        reverse("compose"),
        {
            "from_address": "ann@example.com",
            "to": "bob@elsewhere.test",
            "subject": "Report",
            "body": "See attached.",
            "attachments": files,
        },
    )
    email = message_from_bytes(bytes(Message.objects.get().raw), policy=SMTP_POLICY)
    assert email.get_content_type() == "multipart/mixed"
    parts = list(email.iter_attachments())
    assert [p.get_filename() for p in parts] == ["report.pdf", "Grüße.txt"]
    assert parts[0].get_content() == b"%PDF-1.4 fake"


def test_an_attachment_name_cannot_start_a_header(people):
    attachment = Attachment("a\r\nBcc: eve@evil.test\r\n.txt", "text/plain\r\nX: y", b"x")
    message = accept_message(people.user, "ann@example.com", ["b@x.test"], "S", "B", [attachment])
    email = message_from_bytes(bytes(message.raw), policy=SMTP_POLICY)
    [part] = email.iter_attachments()
    assert part.get_filename() == "a__Bcc: eve@evil.test__.txt"
    assert part.get_content_type() == "application/octet-stream"
    assert email["Bcc"] is None and part["X"] is None


def test_attachments_over_the_size_limit_are_refused_next_to_the_field(ann_client, settings):
    settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES = 1000
    big = SimpleUploadedFile("big.bin", b"x" * 2000, content_type="application/octet-stream")
    response = ann_client.post(
        reverse("compose"),
        {"from_address": "ann@example.com", "to": "bob@elsewhere.test", "attachments": [big]},
    )
    assert "The attachments are too big" in response.content.decode()
    assert not Message.objects.exists()


def test_compose_respects_the_daily_limit(ann_client, settings):
    settings.SENDGATE_DAILY_MESSAGE_LIMIT = 1
    form = {"from_address": "ann@example.com", "to": "bob@elsewhere.test", "body": "x"}
    ann_client.post(reverse("compose"), form)
    response = ann_client.post(reverse("compose"), form)
    assert "limit of 1 message in 24 hours" in response.content.decode()  # singular
    assert Message.objects.count() == 1


def test_a_bad_recipient_is_named_in_the_error(ann_client):
    response = ann_client.post(
        reverse("compose"),
        {
            "from_address": "ann@example.com",
            "to": "bob@elsewhere.test, carol at example",
            "body": "x",
        },
    )
    assert "“carol at example”: Enter a bare e-mail address" in response.content.decode()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r", "\n"]
)
def test_a_subject_with_any_line_separator_gets_a_form_error_and_nothing_is_queued(
    ann_client, separator
):
    response = ann_client.post(
        reverse("compose"),
        {
            "from_address": "ann@example.com",
            "to": "bob@elsewhere.test",
            "subject": f"Hello{separator}Bcc: eve@evil.test",
            "body": "Hi.",
        },
    )
    assert response.status_code == 200
    assert "Line breaks and NUL characters are not allowed here." in response.content.decode()
    assert not Message.objects.exists()
