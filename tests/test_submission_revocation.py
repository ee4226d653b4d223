"""Revoking an app password or disabling an account ends its open SMTP submission sessions."""

from __future__ import annotations

import smtplib
import time

import pytest
from django.urls import reverse

from outbound import listener
from outbound.credentials import create_app_password
from outbound.models import AppPassword
from outbox.models import Message

from .conftest import PASSWORD
from .test_submission import mail

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(people):
    _app, password = create_app_password(people.user, "Laptop")
    people.user.app_password = password
    return people.user


def open_session(submission_server, ann) -> smtplib.SMTP:
    client = submission_server.connect()
    client.login(ann.email, ann.app_password)
    assert client.mail("ann@example.com")[0] == 250  # the login works before it is revoked
    client.rset()
    return client


def assert_hung_up(client: smtplib.SMTP) -> None:
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


def revoke_in_the_console(client, ann) -> None:
    assert client.login(username=ann.email, password=PASSWORD)
    app_password = AppPassword.objects.get(account=ann, name="Laptop")
    response = client.post(reverse("app_password_revoke", args=[app_password.pk]))
    assert response.status_code == 302
    assert not AppPassword.objects.filter(pk=app_password.pk).exists()


def test_revoking_the_app_password_in_the_console_refuses_the_next_mail_and_hangs_up(
    submission_server, ann, client
):
    session = open_session(submission_server, ann)
    revoke_in_the_console(client, ann)
    time.sleep(listener.RECHECK_SECONDS)  # the longest a "still valid" answer is trusted

    code, reply = session.mail("ann@example.com")

    assert code == 421 and reply.startswith(b"4.7.0")
    assert_hung_up(session)
    assert not Message.objects.exists()


def test_disabling_the_account_refuses_the_next_mail_and_hangs_up(submission_server, ann):
    session = open_session(submission_server, ann)
    ann.is_active = False
    ann.save(update_fields=["is_active"])
    time.sleep(listener.RECHECK_SECONDS)

    code, _reply = session.mail("ann@example.com")

    assert code == 421
    assert_hung_up(session)


def test_a_message_under_way_when_the_password_is_revoked_is_not_accepted(
    submission_server, ann, client
):
    session = open_session(submission_server, ann)
    assert session.mail("ann@example.com")[0] == 250
    assert session.rcpt("bob@elsewhere.test")[0] == 250
    revoke_in_the_console(client, ann)

    # Within the re-check interval DATA may still get its 354; the message is checked afresh
    # before it is stored either way.
    code, _reply = session.docmd("DATA")
    if code == 354:
        session.send(mail() + b"\r\n.\r\n")
        code, _reply = session.getreply()

    assert code == 421
    assert_hung_up(session)
    assert not Message.objects.exists()


def test_another_app_password_of_the_same_account_keeps_its_session(submission_server, ann, client):
    _other, other_password = create_app_password(ann, "Phone")
    phone = submission_server.connect()
    phone.login(ann.email, other_password)
    revoke_in_the_console(client, ann)  # revokes only "Laptop"
    time.sleep(listener.RECHECK_SECONDS)

    assert phone.sendmail("ann@example.com", ["bob@elsewhere.test"], mail()) == {}
    assert Message.objects.count() == 1
