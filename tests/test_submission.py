"""The SMTP submission port, driven by real clients: Python's smtplib and swaks."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
from django.db import OperationalError

from gateways.models import SendAsAlias
from outbound.credentials import create_app_password, failure_delay
from outbound.models import AuthFailure
from outbound.submission import submit
from outbox.models import Message

from .conftest import PASSWORD
from .services import missing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(people):
    """Ann with an app password, a verified alias and a pending one."""
    SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    SendAsAlias.objects.create(account=people.user, address="ann@pending.org")
    _app, password = create_app_password(people.user, "Laptop")
    people.user.app_password = password
    return people.user


def mail(sender: str = "ann@example.com", to: str = "bob@elsewhere.test", **headers) -> bytes:
    email = EmailMessage(policy=SMTP_POLICY)
    email["From"] = sender
    email["To"] = to
    email["Subject"] = "Hello"
    for name, value in headers.items():
        email[name] = value
    email.set_content("Hi Bob.\n")
    return email.as_bytes()


def logged_in(submission_server, ann, **kwargs) -> smtplib.SMTP:
    client = submission_server.connect(**kwargs)
    client.login(ann.email, ann.app_password)
    return client


def test_smtplib_submits_over_starttls_with_an_app_password_and_the_message_is_committed(
    submission_server, ann
):
    client = logged_in(submission_server, ann)
    data = mail(Bcc="secret@hidden.test")
    refused = client.sendmail("ann@example.com", ["bob@elsewhere.test", "secret@hidden.test"], data)
    client.quit()

    assert refused == {}
    # No worker runs in this test: the 250 came after the commit, not after delivery.
    [message] = Message.objects.all()
    assert message.state == Message.State.QUEUED
    assert message.account == ann and message.from_address == "ann@example.com"
    assert message.recipients == ["bob@elsewhere.test", "secret@hidden.test"]
    stored = message_from_bytes(bytes(message.raw), policy=SMTP_POLICY)
    assert stored["Bcc"] is None and b"secret@hidden.test" not in bytes(message.raw)
    assert "with ESMTPSA" in stored["Received"] and "submit.test" in stored["Received"]
    assert stored["Message-ID"] and stored["Date"]


def test_a_verified_alias_may_be_envelope_sender_and_from(submission_server, ann):
    client = logged_in(submission_server, ann)
    client.sendmail("ann@partner.org", ["bob@elsewhere.test"], mail("Ann P <ann@partner.org>"))
    client.quit()
    assert Message.objects.get().from_address == "ann@partner.org"


def test_swaks_submits_over_starttls_with_an_app_password(submission_server, ann):
    swaks = shutil.which("swaks")
    if swaks is None:
        missing("swaks is not installed (Debian package swaks)")
    result = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{submission_server.port}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            ann.email,
            "--auth-password",
            ann.app_password,
            "--from",
            "ann@example.com",
            "--to",
            "bob@elsewhere.test,carol@elsewhere.test",
            "--pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Queued as" in result.stdout
    assert Message.objects.get().recipients == ["bob@elsewhere.test", "carol@elsewhere.test"]


def test_the_console_password_does_not_work_for_smtp(submission_server, ann):
    client = submission_server.connect()
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(ann.email, PASSWORD)
    assert refused.value.smtp_code == 535
    assert not Message.objects.exists()


def test_a_wrong_app_password_gets_535_and_is_recorded(submission_server, ann):
    client = submission_server.connect()
    client.user, client.password = ann.email, "abcd efgh ijkl mnop"
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.auth("PLAIN", client.auth_plain)
    assert refused.value.smtp_code == 535
    assert AuthFailure.objects.filter(login=ann.email).count() == 1


def test_malformed_auth_data_gets_501(submission_server, ann):
    client = submission_server.connect()
    assert client.docmd("AUTH", "PLAIN not-base64!")[0] == 501
    assert client.docmd("AUTH", "PLAIN YWJj")[0] == 501  # "abc": no NUL separators


def test_repeated_failures_lock_the_login_even_for_the_right_password(
    submission_server, ann, settings
):
    settings.SENDGATE_AUTH_MAX_FAILURES = 3
    for _attempt in range(3):
        client = submission_server.connect()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(ann.email, "wrong")
    client = submission_server.connect()
    with pytest.raises(smtplib.SMTPAuthenticationError) as locked:
        client.login(ann.email, ann.app_password)
    assert locked.value.smtp_code == 454


def test_failures_under_many_login_names_lock_the_address(submission_server, ann, settings):
    settings.SENDGATE_AUTH_MAX_FAILURES = 3
    for number in range(3):
        client = submission_server.connect()
        client.user, client.password = f"guess{number}@example.com", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth("PLAIN", client.auth_plain)
    client = submission_server.connect()
    with pytest.raises(smtplib.SMTPAuthenticationError) as locked:
        client.login(ann.email, ann.app_password)
    assert locked.value.smtp_code == 454


def test_each_failure_is_answered_later_up_to_a_limit(settings):
    settings.SENDGATE_AUTH_FAILURE_DELAY = 1.0
    delays = [failure_delay(n) for n in (1, 2, 5, 50)]
    assert delays == [1.0, 2.0, 5.0, 5.0]


def test_a_database_outage_during_login_is_a_temporary_454(submission_server, ann, monkeypatch):
    def unreachable(login):
        raise OperationalError("connection refused")

    monkeypatch.setattr("outbound.credentials.candidates", unreachable)
    client = submission_server.connect()
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(ann.email, ann.app_password)
    assert refused.value.smtp_code == 454


def test_auth_is_not_offered_and_mail_is_refused_before_starttls(submission_server, ann):
    client = submission_server.connect(starttls=False)
    assert not client.has_extn("auth")
    assert client.docmd("AUTH", "PLAIN")[0] == 530
    assert client.mail("ann@example.com")[0] == 530


def test_plaintext_auth_on_loopback_works_only_when_the_operator_allows_it(start_submission, ann):
    strict = start_submission().connect(starttls=False)
    assert not strict.has_extn("auth")
    demo = start_submission(plaintext_auth_on_loopback=True).connect(starttls=False)
    demo.login(ann.email, ann.app_password)
    demo.sendmail("ann@example.com", ["bob@elsewhere.test"], mail())
    received = message_from_bytes(bytes(Message.objects.get().raw), policy=SMTP_POLICY)
    assert "with ESMTPA" in received["Received"]  # authenticated, not encrypted


def test_implicit_tls_port_accepts_the_same_login(submission_server, ann):
    client = smtplib.SMTP_SSL(
        submission_server.host,
        submission_server.tls_port,
        context=submission_server.client_context(),
        timeout=10,
    )
    client.login(ann.email, ann.app_password)
    client.sendmail("ann@example.com", ["bob@elsewhere.test"], mail())
    client.quit()
    assert Message.objects.count() == 1


def test_an_unverified_alias_as_envelope_sender_gets_550_5_7_1(submission_server, ann):
    client = logged_in(submission_server, ann)
    code, reply = client.mail("ann@pending.org")
    assert code == 550 and reply.startswith(b"5.7.1 You may not send as ann@pending.org")
    assert not Message.objects.exists()


def test_a_foreign_from_header_gets_550_5_7_1_and_nothing_is_queued(submission_server, ann):
    client = logged_in(submission_server, ann)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("ann@example.com", ["bob@elsewhere.test"], mail("zoe@other.example"))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 The From header")
    assert not Message.objects.exists()


def test_another_accounts_address_is_refused_as_envelope_sender(submission_server, ann):
    client = logged_in(submission_server, ann)
    assert client.mail("zoe@other.example")[0] == 550


def test_an_oversize_message_gets_552_and_nothing_is_queued(submission_server, ann):
    client = logged_in(submission_server, ann)
    assert "65536" in client.esmtp_features["size"]
    big = mail() + (b"x" * 70 + b"\r\n") * 1024
    # Without the SIZE parameter the server counts the data itself.
    client.mail("ann@example.com")
    client.rcpt("bob@elsewhere.test")
    assert client.data(big)[0] == 552
    # With it, smtplib announces the size and the server refuses at MAIL.
    client.rset()
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail("ann@example.com", ["bob@elsewhere.test"], big)
    assert refused.value.smtp_code == 552
    assert not Message.objects.exists()


def test_too_many_recipients_get_452_and_nothing_is_queued(submission_server, ann, settings):
    settings.SENDGATE_SUBMISSION_MAX_RECIPIENTS = 2
    client = logged_in(submission_server, ann)
    client.mail("ann@example.com")
    assert client.rcpt("a@elsewhere.test")[0] == 250
    assert client.rcpt("b@elsewhere.test")[0] == 250
    code, reply = client.rcpt("c@elsewhere.test")
    assert code == 452 and reply.startswith(b"4.5.3")
    client.rset()
    assert not Message.objects.exists()


def test_bad_address_syntax_gets_501(submission_server, ann):
    client = logged_in(submission_server, ann)
    assert client.mail("ann@example.com")[0] == 250
    assert client.rcpt("bob")[0] == 501  # no domain
    assert client.rcpt("bob@-elsewhere.test")[0] == 501
    client.rset()
    assert client.docmd("MAIL", "ann@example.com")[0] == 501  # no FROM:


def test_the_daily_limit_defers_with_451(submission_server, ann, settings):
    settings.SENDGATE_DAILY_MESSAGE_LIMIT = 1
    client = logged_in(submission_server, ann)
    client.sendmail("ann@example.com", ["bob@elsewhere.test"], mail())
    code, reply = client.mail("ann@example.com")
    assert code == 451 and reply.startswith(b"4.7.1")
    assert Message.objects.count() == 1


def test_replies_stay_english_when_the_instance_speaks_dutch(submission_server, ann, settings):
    # Protocol text is read by clients and by people searching for it: never translated.
    settings.LANGUAGE_CODE = "nl"
    client = logged_in(submission_server, ann)
    assert client.mail("ann@example.com") == (250, b"2.1.0 Sender OK")
    assert client.rcpt("bob") == (501, b"5.1.3 Bad recipient address syntax")
    assert client.rcpt("bob@elsewhere.test") == (250, b"2.1.5 Recipient OK")
    code, reply = client.data(mail())
    assert code == 250 and reply.startswith(b"2.0.0 Queued as ")
    assert client.mail("ann@pending.org")[1].startswith(b"5.7.1 You may not send as ann@pending")


@pytest.mark.parametrize(
    ("headers", "subject"),
    [
        (
            b"Subject: Plain  words,\r\n\tfolded\r\nMessage-ID: <a1@example.com>",
            "Plain words, folded",
        ),
        (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n =?utf-8?b?S8O2bG4=?=", "Grüße aus Köln"),
        (b"Message-ID:\r\n <a1@example.com>", ""),
    ],
)
def test_the_log_shows_the_subject_unfolded_and_decoded_and_keeps_the_message_id(
    people, headers, subject
):
    raw = b"From: ann@example.com\r\nTo: bob@elsewhere.test\r\n" + headers + b"\r\n\r\nHi\r\n"
    message = submit(people.user, "ann@example.com", ["bob@elsewhere.test"], raw, "by test")
    assert message.subject == subject
    if b"Message-ID" in headers:
        assert message.message_id == "<a1@example.com>"
    else:
        assert message.message_id.endswith("@example.com>")  # made here, and added to the message
        assert f"Message-ID: {message.message_id}".encode() in bytes(message.raw)


def test_pipelining_8bitmime_and_smtputf8_are_offered_and_utf8_mail_is_accepted(
    submission_server, ann
):
    client = logged_in(submission_server, ann)
    for extension in ("pipelining", "8bitmime", "smtputf8"):
        assert client.has_extn(extension)
    data = (
        "From: ann@example.com\r\nTo: bob@elsewhere.test\r\nSubject: Grüße aus Köln\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Schöne Grüße\r\n"
    ).encode()
    client.sendmail(
        "ann@example.com",
        ["bob@elsewhere.test"],
        data,
        mail_options=["SMTPUTF8", "BODY=8BITMIME"],
    )
    message = Message.objects.get()
    assert message.subject == "Grüße aus Köln"
    assert "Schöne Grüße".encode() in bytes(message.raw)
