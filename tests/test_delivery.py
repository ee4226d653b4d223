"""Delivery end to end over real sockets: aiosmtpd peers with STARTTLS/TLS and AUTH on loopback."""

from __future__ import annotations

import pytest

from gateways.models import SendAsAlias, SmtpServer
from outbound import delivery
from outbound.intake import accept_message
from outbound.routing import RouteKind
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import server_for


@pytest.fixture
def setup(people, smtp_peer, trust_test_ca):
    """Ann with a verified alias at partner.org whose own server is a second peer."""
    gateway = smtp_peer("relay@example.com", "relay-secret")
    partner = smtp_peer("ann@partner.org", "partner-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    alias = SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        display_name="Ann P",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    return people, gateway, partner, alias


def allow(people, value: bool) -> None:
    change = set_domain_policy(people.domain, value, people.admin)
    propagate(change.pk)
    people.user.refresh_from_db()


def send_from_alias(people) -> Message:
    message = accept_message(people.user, "ann@partner.org", ["bob@elsewhere.test"], "Hi", "Body")
    delivery.deliver(message.pk)
    message.refresh_from_db()
    return message


def test_policy_off_sends_alias_mail_through_domain_gateway_with_sender_header(setup):
    people, gateway, partner, _alias = setup
    message = send_from_alias(people)

    assert message.state == Message.State.SENT
    assert message.last_route == RouteKind.DOMAIN_GATEWAY
    assert partner.messages == []
    [got] = gateway.messages
    assert got.mail_from == "ann@example.com"
    assert got.rcpt_tos == ["bob@elsewhere.test"]
    assert got.login == "relay@example.com" and got.tls
    assert got.message["Sender"] == "ann@example.com"
    assert "ann@partner.org" in got.message["From"]


def test_alias_mail_bypasses_domain_gateway_when_allowed(setup):
    people, gateway, partner, _alias = setup
    allow(people, True)
    message = send_from_alias(people)

    assert message.state == Message.State.SENT
    assert message.last_route == RouteKind.USER_GATEWAY
    assert gateway.messages == []
    [got] = partner.messages
    assert got.mail_from == "ann@partner.org"
    assert got.login == "ann@partner.org"  # the user's own credentials
    assert got.tls
    assert got.message["Sender"] is None
    attempt = message.attempts.get()
    assert (attempt.route, attempt.rule, attempt.policy_version) == (
        RouteKind.USER_GATEWAY,
        "alias_gateway_allowed",
        1,
    )
    assert attempt.server == f"localhost:{partner.port}"


def test_alias_gateway_with_implicit_tls_is_used(setup, smtp_peer):
    people, gateway, _partner, alias = setup
    tls_peer = smtp_peer("ann@partner.org", "tls-secret", implicit_tls=True)
    alias.smtp_server = server_for(tls_peer, SmtpServer.Security.TLS)
    alias.save()
    allow(people, True)
    message = send_from_alias(people)

    assert message.state == Message.State.SENT
    assert [m.mail_from for m in tls_peer.messages] == ["ann@partner.org"]
    assert gateway.messages == []


def test_queued_mail_follows_a_policy_change_made_after_it_was_accepted(setup):
    people, gateway, partner, _alias = setup
    allow(people, True)
    message = accept_message(people.user, "ann@partner.org", ["bob@elsewhere.test"], "Hi", "B")
    allow(people, False)  # admin switches it off while the message waits in the outbox
    delivery.deliver(message.pk)

    assert partner.messages == []
    assert len(gateway.messages) == 1
    assert message.attempts.get().policy_version == 2


def test_untrusted_partner_certificate_means_no_delivery_and_no_plaintext_fallback(
    setup, smtp_peer, untrusted_pki
):
    people, gateway, _partner, alias = setup
    impostor = smtp_peer("ann@partner.org", "partner-secret", tls=untrusted_pki.server_context)
    alias.smtp_server = server_for(impostor)
    alias.save()
    allow(people, True)
    message = send_from_alias(people)

    assert impostor.messages == [] and gateway.messages == []
    assert message.state == Message.State.DEFERRED
    assert "certificate" in message.last_reply and "not valid" in message.last_reply
    assert message.attempts.get().outcome == "deferred"


def test_gateway_without_starttls_is_refused_rather_than_used_in_plaintext(setup, smtp_peer):
    people, gateway, _partner, alias = setup
    plain = smtp_peer("ann@partner.org", "partner-secret", offer_starttls=False)
    alias.smtp_server = server_for(plain)
    alias.save()
    allow(people, True)
    message = send_from_alias(people)

    assert plain.messages == [] and gateway.messages == []
    assert message.state == Message.State.DEFERRED
    assert "STARTTLS" in message.last_reply


def test_wrong_password_is_reported_and_nothing_is_sent(setup):
    people, gateway, partner, alias = setup
    server = alias.smtp_server
    server.password = "not-the-password"
    server.save()
    allow(people, True)
    message = send_from_alias(people)

    assert partner.messages == [] and gateway.messages == []
    assert "username or password" in message.last_reply
    assert message.state == Message.State.DEFERRED


def test_a_message_is_delivered_once_even_when_woken_twice(setup):
    people, gateway, _partner, _alias = setup
    message = accept_message(people.user, people.user.email, ["bob@elsewhere.test"], "Hi", "B")
    delivery.deliver(message.pk)
    delivery.deliver(message.pk)
    assert len(gateway.messages) == 1
    assert message.attempts.count() == 1
