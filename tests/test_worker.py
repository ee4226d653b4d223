"""A real Celery worker process delivers what the web process queued (no eager mode)."""

from __future__ import annotations

import pytest

from gateways.models import SendAsAlias
from outbound.intake import accept_message
from outbound.models import Message
from policy.models import PolicyChange
from policy.service import set_domain_policy

from .conftest import server_for, wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def world(people, smtp_peer, trust_test_ca):
    gateway = smtp_peer("relay@example.com", "relay-secret")
    partner = smtp_peer("ann@partner.org", "partner-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    return people, gateway, partner


def test_worker_process_propagates_policy_and_delivers_through_the_partner_server(
    world, celery_worker
):
    people, gateway, partner = world
    change = set_domain_policy(people.domain, True, people.admin)
    wait_for(lambda: PolicyChange.objects.get(pk=change.pk).finished_at, what="policy propagation")
    people.user.refresh_from_db()
    assert people.user.gateways_allowed

    message = accept_message(people.user, "ann@partner.org", ["bob@elsewhere.test"], "Hi", "B")
    wait_for(lambda: partner.messages, what="the partner server to receive the message")
    message = wait_for(
        lambda: Message.objects.filter(pk=message.pk, state=Message.State.SENT).first(),
        what="the message to be marked sent",
    )
    assert message.attempts.get().route == "user_gateway"
    assert partner.messages[0].mail_from == "ann@partner.org"
    assert gateway.messages == []


def test_sweeper_recovers_a_message_whose_wake_up_was_lost(world, celery_worker):
    """The outbox row is the truth: a message nobody was told about is still delivered."""
    from outbound.tasks import sweep_outbox

    people, gateway, _partner = world
    message = Message.objects.create(  # committed without any task, as after a crash
        account=people.user,
        from_address=people.user.email,
        recipients=["bob@elsewhere.test"],
        pending_recipients=["bob@elsewhere.test"],
        subject="Lost",
        message_id="<lost@example.com>",
        raw=b"From: ann@example.com\r\nTo: bob@elsewhere.test\r\nSubject: Lost\r\n\r\nHello\r\n",
    )
    sweep_outbox.delay()
    wait_for(lambda: gateway.messages, what="the swept message to arrive")
    message.refresh_from_db()
    assert message.state == Message.State.SENT
