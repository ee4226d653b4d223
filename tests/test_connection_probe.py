"""The connection test and the re-test prove the credentials can send as the alias."""

from __future__ import annotations

import asyncio

import pytest
from django.urls import reverse

from gateways import health, server_state
from gateways.connection_test import probe
from gateways.models import SendAsAlias, SmtpServer
from mailkit.smtp import Security, Target, run_session
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, submitted

PARTNER = "ann@partner.org"
NOT_OWNED = "553 5.7.1 <ann@partner.org>: Sender address rejected: not owned by user bob"


@pytest.fixture
def ann(client, people, trust_test_ca):
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    client.login(username=people.user.email, password=PASSWORD)
    return people


def partner_server(peer) -> SmtpServer:
    return SmtpServer(host="localhost", port=peer.port, username="bob@partner.org", password="pw")


def test_credentials_that_cannot_send_as_the_alias_fail_the_test_at_rcpt(
    ann, fault_peer, pki, client
):
    peer = fault_peer(
        starttls=pki.server_context, auth_reply="235 2.7.0 ok", rcpt_replies={PARTNER: NOT_OWNED}
    )
    response = submitted(
        client,
        client.post(
            reverse("alias_list"),
            {
                "address": PARTNER,
                "smtp_host": "localhost",
                "smtp_port": peer.port,
                "smtp_security": "starttls",
                "smtp_username": "bob@partner.org",
                "smtp_password": "pw",
            },
        ),
    )
    page = response.content.decode()
    assert "refused mail from ann@partner.org" in page and "not owned by user" in page
    assert not SendAsAlias.objects.exists()  # nothing saved
    assert f"RCPT TO:<{PARTNER}>" in peer.commands and "RSET" in peer.commands
    assert not any(c.startswith("DATA") for c in peer.commands)


def test_a_passing_test_probes_the_recipient_then_resets(ann, fault_peer, pki):
    peer = fault_peer(starttls=pki.server_context, auth_reply="235 2.7.0 ok")
    server = partner_server(peer)
    outcome = asyncio.run(probe(server, PARTNER))
    assert outcome.ok and "a recipient" in outcome.reply
    verbs = [c.split(" ")[0].split(":")[0] for c in peer.commands]
    assert verbs[verbs.index("MAIL") :] == ["MAIL", "RCPT", "RSET", "QUIT"]
    assert peer.delivered == []


def test_a_wrong_password_costs_one_login_attempt(ann, fault_peer, pki):
    peer = fault_peer(starttls=pki.server_context, auth_reply="535 5.7.8 authentication failed")
    outcome = asyncio.run(probe(partner_server(peer), PARTNER))
    assert not outcome.ok and "rejected the username or password" in outcome.error
    assert [c.split(" ")[:2] for c in peer.commands if c.startswith("AUTH")] == [["AUTH", "PLAIN"]]


def test_the_re_test_pauses_a_server_whose_credentials_cannot_send_as_the_alias(
    ann, fault_peer, pki
):
    peer = fault_peer(
        starttls=pki.server_context, auth_reply="235 2.7.0 ok", rcpt_replies={PARTNER: NOT_OWNED}
    )
    server = partner_server(peer)
    server.last_test_ok = True
    server.save()
    SendAsAlias.objects.create(
        account=ann.user, address=PARTNER, state=SendAsAlias.State.VERIFIED, smtp_server=server
    )
    health.retest(server.pk)
    server.refresh_from_db()
    assert server_state.state_of(server) is server_state.State.PAUSED
    assert "not owned by user" in server.pause_reason
    [notice] = Message.objects.filter(kind=Message.Kind.REPORT)
    assert notice.recipients == [ann.user.email]


def test_implicit_tls_on_a_starttls_port_says_what_is_probably_wrong(smtp_peer, trust_test_ca):
    peer = smtp_peer(PARTNER, "s")  # a submission port: plain greeting, then STARTTLS
    target = Target(
        host="localhost", port=peer.port, security=Security.TLS, username=PARTNER, password="s"
    )
    outcome = asyncio.run(run_session(target, PARTNER, [PARTNER]))
    assert not outcome.ok
    assert "The server may expect STARTTLS on this port" in outcome.error


def test_a_bad_certificate_on_implicit_tls_is_not_blamed_on_the_port(
    smtp_peer, trust_test_ca, untrusted_pki
):
    peer = smtp_peer(PARTNER, "s", implicit_tls=True, tls=untrusted_pki.server_context)
    target = Target(
        host="localhost", port=peer.port, security=Security.TLS, username=PARTNER, password="s"
    )
    outcome = asyncio.run(run_session(target, PARTNER, [PARTNER]))
    assert "certificate" in outcome.error and "STARTTLS" not in outcome.error
