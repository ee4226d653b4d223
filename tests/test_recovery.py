"""Fixing the cause releases waiting mail at once; one state machine for a user's SMTP server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gateways import health, server_state
from gateways.models import ConnectionTest, SendAsAlias, SmtpServer
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import ManualRetry, Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, ROOT, server_for, submitted, wait_for

BOB = "bob@elsewhere.test"
PARTNER = "ann@partner.org"


@pytest.fixture
def ann(client, people, smtp_peer, trust_test_ca):
    """Ann, logged in, may use her own servers; example.com has a gateway of its own."""
    gateway = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    client.login(username=people.user.email, password=PASSWORD)
    return people


@pytest.fixture
def paused_alias(ann, smtp_peer):
    """Ann's alias whose server refused the stored (outdated) password during delivery."""
    partner = smtp_peer(PARTNER, "partner-secret")
    server = server_for(partner)
    server.password = "outdated"
    server.save()
    alias = SendAsAlias.objects.create(
        account=ann.user, address=PARTNER, state=SendAsAlias.State.VERIFIED, smtp_server=server
    )
    message = accept_message(ann.user, PARTNER, [BOB], "Hi", "B")
    delivery.deliver(message.pk)
    server.refresh_from_db()
    assert server_state.state_of(server) is server_state.State.PAUSED
    return alias, partner, message


def edit(client, alias, **fields):
    server = alias.smtp_server
    data = {
        "display_name": alias.display_name,
        "reply_to": "",
        "treat_as_alias": "on",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "starttls",
        "smtp_username": server.username,
        "smtp_password": "",
    } | fields
    return submitted(client, client.post(reverse("alias_edit", args=[alias.pk]), data))


def waiting_time(message: Message) -> timedelta:
    return Message.objects.get(pk=message.pk).next_attempt_at - timezone.now()


def test_held_mail_does_not_push_its_back_off_further(paused_alias):
    _alias, partner, message = paused_alias
    for _ in range(4):
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        delivery.deliver(message.pk)
    message.refresh_from_db()
    assert message.state == Message.State.DEFERRED and "paused" in message.last_reply
    assert message.attempt_count == 1  # only the refused login counted
    assert message.attempts.count() == 1
    assert waiting_time(message) <= timedelta(minutes=5)  # the first step, not the last
    assert partner.messages == []


def test_correcting_the_password_makes_held_mail_due_at_once(client, paused_alias):
    alias, _partner, message = paused_alias
    assert waiting_time(message) > timedelta(minutes=1)
    response = edit(client, alias, smtp_password="partner-secret")
    assert response.redirect_chain[-1][0] == reverse("alias_list")
    assert waiting_time(message) <= timedelta(0)
    assert message.pk in delivery.due_message_ids()


@pytest.mark.worker
def test_a_worker_sends_held_mail_as_soon_as_the_password_is_corrected(
    client, paused_alias, worker_factory
):
    alias, partner, message = paused_alias
    worker_factory()
    data = {
        "display_name": alias.display_name,
        "reply_to": "",
        "treat_as_alias": "on",
        "smtp_host": "localhost",
        "smtp_port": partner.port,
        "smtp_security": "starttls",
        "smtp_username": PARTNER,
        "smtp_password": "partner-secret",
    }
    client.post(reverse("alias_edit", args=[alias.pk]), data)
    test = ConnectionTest.objects.get()
    wait_for(
        lambda: not ConnectionTest.objects.get(pk=test.pk).is_running,
        what="the worker to run the connection test",
    )
    status = reverse("connection_test_status", args=[test.pk])
    assert client.get(status, headers={"HX-Request": "true"})["HX-Redirect"] == reverse(
        "alias_list"
    )
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, state=Message.State.SENT).exists(),
        what="the held message to be sent without waiting for its timer",
    )
    assert [m.mail_from for m in partner.messages] == [PARTNER]


def test_a_name_only_edit_with_the_policy_off_keeps_the_pause(client, ann, paused_alias):
    alias, partner, message = paused_alias
    propagate(set_domain_policy(ann.domain, False, ann.admin).pk)
    response = client.post(
        reverse("alias_edit", args=[alias.pk]),
        {"display_name": "Ann at Partner", "reply_to": "", "treat_as_alias": "on"},
    )
    assert response.status_code == 302
    server = SmtpServer.objects.get(pk=alias.smtp_server_id)
    assert server_state.state_of(server) is server_state.State.PAUSED
    assert waiting_time(message) > timedelta(minutes=1)


def test_a_passing_re_test_resumes_the_server_and_releases_its_mail(ann, fault_peer, pki, caplog):
    caplog.set_level(logging.INFO, logger="sendgate.gateways")
    peer = fault_peer(starttls=pki.server_context, auth_reply="535 5.7.8 authentication failed")
    server = SmtpServer.objects.create(
        host="localhost", port=peer.port, username=PARTNER, password="pw", last_test_ok=True
    )
    SendAsAlias.objects.create(
        account=ann.user, address=PARTNER, state=SendAsAlias.State.VERIFIED, smtp_server=server
    )
    message = accept_message(ann.user, PARTNER, [BOB], "Hi", "B")
    delivery.deliver(message.pk)
    health.retest(server.pk)  # still refused: stays paused, no second notice
    server.refresh_from_db()
    assert server_state.state_of(server) is server_state.State.PAUSED
    assert Message.objects.filter(kind=Message.Kind.REPORT).count() == 1

    peer.script.auth_reply = "235 2.7.0 ok"  # the partner unlocked the account
    health.retest(server.pk)
    server.refresh_from_db()
    assert server_state.state_of(server) is server_state.State.OK and server.pause_reason == ""
    assert waiting_time(message) <= timedelta(0)
    delivery.deliver(message.pk)
    assert Message.objects.get(pk=message.pk).state == Message.State.SENT
    assert [d.mail_from for d in peer.delivered] == [PARTNER]
    transitions = [
        (r.event, r.before, r.after, r.reason)
        for r in caplog.records
        if getattr(r, "event", "").startswith("gateway.") and hasattr(r, "before")
    ]
    assert any(t[:3] == ("gateway.paused", "ok", "paused") and "535" in t[3] for t in transitions)
    assert ("gateway.resumed", "paused", "ok", "re-test passed") in transitions


def test_every_state_change_is_logged_in_one_place(caplog):
    caplog.set_level(logging.INFO, logger="sendgate.gateways")
    server = SmtpServer(host="smtp.partner.test", username="u", password="p")
    assert server_state.state_of(server) is server_state.State.UNTESTED
    server_state.failed_test(server, "535 no")
    assert server_state.state_of(server) is server_state.State.UNTESTED
    server_state.passed_test(server, "250 ok")
    assert server_state.state_of(server) is server_state.State.OK
    server.paused_at, server.pause_reason = timezone.now(), "535 no"
    server_state.passed_test(server, "250 ok")
    assert server_state.state_of(server) is server_state.State.OK and server.pause_reason == ""
    assert [(r.event, r.before, r.after, r.reason) for r in caplog.records] == [
        ("gateway.ok", "untested", "ok", "connection test passed"),
        ("gateway.resumed", "paused", "ok", "connection test passed"),
    ]


# --- retry now ------------------------------------------------------------------------------------


@pytest.fixture
def deferred(ann, fault_peer):
    """Two of Ann's messages deferred by a busy domain gateway."""
    peer = fault_peer(rcpt_replies={BOB: "451 4.3.0 busy"})
    ann.domain.outbound_gateway = SmtpServer.objects.create(
        host="localhost", port=peer.port, security="none", last_test_ok=True
    )
    ann.domain.save()
    ids = [accept_message(ann.user, ann.user.email, [BOB], f"#{n}", "B").pk for n in range(2)]
    delivery.deliver_batch(ids)
    assert set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"deferred"}
    return [Message.objects.get(pk=pk) for pk in ids], f"localhost:{peer.port}"


def test_a_user_retries_a_deferred_message_now_and_it_is_audited(client, deferred):
    (message, other), _server = deferred
    page = client.get(reverse("sent_detail", args=[message.pk])).content.decode()
    assert "Retry now" in page
    response = client.post(reverse("sent_retry", args=[message.pk]), follow=True)
    assert "Trying again now." in response.content.decode()
    assert waiting_time(message) <= timedelta(0)
    assert waiting_time(other) > timedelta(minutes=1)  # only the one asked for
    [retry] = ManualRetry.objects.all()
    assert (retry.requested_by_email, retry.scope, retry.subject, retry.message_count) == (
        message.account.email,
        "message",
        message.message_id,
        1,
    )


def test_retrying_a_message_that_is_not_deferred_changes_nothing(client, deferred, people):
    (message, _other), _server = deferred
    Message.objects.filter(pk=message.pk).update(state=Message.State.SENT)
    response = client.post(reverse("sent_retry", args=[message.pk]), follow=True)
    assert "Only a message waiting for its next attempt" in response.content.decode()
    assert not ManualRetry.objects.exists()


def test_an_admin_retries_one_message_one_server_or_the_whole_domain(client, deferred, people):
    (message, other), server = deferred
    client.login(username=people.admin.email, password=PASSWORD)
    log = client.get(reverse("delivery_log", args=[people.domain.pk])).content.decode()
    assert server in log and "Retry all deferred mail now" in log

    client.post(reverse("delivery_retry_message", args=[people.domain.pk, message.pk]))
    assert waiting_time(message) <= timedelta(0) and waiting_time(other) > timedelta(minutes=1)

    client.post(reverse("delivery_retry", args=[people.domain.pk]), {"server": "nowhere:25"})
    assert waiting_time(other) > timedelta(minutes=1)  # no mail waits there: nothing changes
    client.post(reverse("delivery_retry", args=[people.domain.pk]), {"server": server})
    assert waiting_time(other) <= timedelta(0)

    Message.objects.update(next_attempt_at=timezone.now() + timedelta(hours=1))
    client.post(reverse("delivery_retry", args=[people.domain.pk]))
    assert waiting_time(message) <= timedelta(0) and waiting_time(other) <= timedelta(0)

    audit = [(r.scope, r.subject, r.message_count) for r in ManualRetry.objects.all()]
    assert audit == [
        ("domain", "example.com", 2),
        ("server", server, 2),  # the message retried before still waits its turn
        ("message", message.message_id, 1),
    ]
    log = client.get(reverse("delivery_log", args=[people.domain.pk])).content.decode()
    assert "Recent manual retries" in log and people.admin.email in log


def test_an_admin_of_another_domain_cannot_retry_this_domains_mail(client, deferred, people):
    (message, _other), _server = deferred
    people.outsider.administered_domains.add(people.outsider.domain)
    client.login(username=people.outsider.email, password=PASSWORD)
    urls = [
        reverse("delivery_retry", args=[people.domain.pk]),
        reverse("delivery_retry_message", args=[people.domain.pk, message.pk]),
        reverse("delivery_retry_message", args=[people.outsider.domain.pk, message.pk]),
    ]
    for url in urls:
        assert client.post(url).status_code == 404, url
    assert waiting_time(message) > timedelta(minutes=1)
    assert not ManualRetry.objects.exists()


def test_retry_settings_accept_fractions_of_a_minute(tmp_path):
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        SENDGATE_VAR_DIR=str(tmp_path),
        SENDGATE_RETRY_MINUTES="0.5,1.5",
    )
    env.pop("DATABASE_URL", None)
    code = (
        "import django; django.setup(); from outbound.delivery import retry_delay; "
        "print(retry_delay(1).total_seconds(), retry_delay(5).total_seconds())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30.0", "90.0"]
