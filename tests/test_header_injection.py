"""No value a user types can smuggle a header or an SMTP command into a message (hypothesis)."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import SMTP

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.forms import AliasForm
from gateways.models import SendAsAlias
from outbound.intake import accept_message
from outbox.models import Message

EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
}
# Text that likes line breaks and NULs, and header-looking lines after them.
nasty = st.lists(
    st.sampled_from(list("ab ,:<>@.\r\n\x00\t\u2028é") + ["\r\nBcc: x@evil.test", "\nX-A: 1"]),
    max_size=20,
).map("".join)

relaxed = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_clean(raw: bytes) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line
    parsed = message_from_bytes(raw, policy=SMTP)
    assert {name.lower() for name in parsed} <= EXPECTED_HEADERS


@pytest.mark.django_db
@relaxed
@given(subject=nasty)
def test_subject_never_carries_a_line_break_into_the_message(people, subject):
    before = Message.objects.count()
    try:
        message = accept_message(people.user, people.user.email, ["bob@x.test"], subject, "B")
    except (ValidationError, ValueError):
        assert Message.objects.count() == before  # refused, and nothing was stored
        return
    assert_clean(bytes(message.raw))


@pytest.mark.django_db
@relaxed
@given(name=nasty, reply_to=nasty)
def test_alias_name_and_reply_to_never_reach_headers_with_line_breaks(people, name, reply_to):
    form = AliasForm(
        {"display_name": name, "address": "ann@partner.test", "reply_to": reply_to},
        account=people.user,
    )
    if not form.is_valid():
        return
    alias = form.alias()
    alias.state = SendAsAlias.State.VERIFIED
    alias.save()
    try:
        message = accept_message(people.user, alias.address, ["bob@x.test"], "Hi", "B")
        assert_clean(bytes(message.raw))
    finally:
        alias.delete()


@pytest.mark.django_db
@relaxed
@given(recipient=nasty)
def test_recipient_addresses_are_parsed_strictly(people, recipient):
    try:
        message = accept_message(people.user, people.user.email, [recipient], "Hi", "B")
    except (ValidationError, ValueError):
        return
    assert all("\r" not in r and "\n" not in r for r in message.recipients)
    assert_clean(bytes(message.raw))
