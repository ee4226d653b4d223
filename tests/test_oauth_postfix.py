"""End to end against real mail servers: Postfix takes AUTH XOAUTH2 through Dovecot's oauth2
passdb, which asks the test authorization server whether the token Sendgate sends is valid."""

from __future__ import annotations

import pytest
from django.utils import timezone

from gateways.models import SmtpServer
from outbound.intake import accept_message
from outbox.models import Message

from .conftest import wait_for
from .test_oauth import BOB, ann, attempt, notices_for, server_of, sign_in  # noqa: F401


@pytest.fixture
def world(postfix_oauth):
    return postfix_oauth


def test_mail_goes_out_through_postfix_authenticated_by_xoauth2(client, ann, world):  # noqa: F811
    people, alias = ann
    response = sign_in(client, world.oauth, alias)
    assert response.status_code == 302, response.content.decode()
    server = server_of(alias)
    assert server.last_test_ok and server.port == world.stack.port

    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert message.state == Message.State.SENT, message.last_reply
    [relayed] = wait_for(lambda: world.relayed.messages, what="Postfix to relay the message")
    assert relayed.mail_from == "ann@partner.org" and relayed.rcpt_tos == [BOB]
    assert relayed.message["Subject"] == "Hi"
    log = world.stack.log()
    assert "sasl_method=XOAUTH2, sasl_username=ann@partner.org" in log


def test_postfix_refusing_a_renewed_token_pauses_the_gateway(
    client,
    ann,  # noqa: F811
    world,
    monkeypatch,
):
    people, alias = ann
    sign_in(client, world.oauth, alias)
    # The provider stops vouching for any token (say SMTP AUTH was switched off for the
    # mailbox): Dovecot's introspection says "inactive" and Postfix answers 535.
    monkeypatch.setattr(world.oauth.auth, "holder", lambda token: None)
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert not server_of(alias).is_paused  # first the cached token is renewed and retried
    message = attempt(message)
    server = server_of(alias)
    assert server.is_paused and "refused the sign-in token (535" in server.pause_reason
    assert message.state == Message.State.DEFERRED
    assert world.relayed.messages == []
    [notice] = notices_for(people)
    assert "sign in again" in notice
    assert SmtpServer.objects.filter(pk=server.pk, paused_at__lte=timezone.now()).exists()
