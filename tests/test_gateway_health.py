"""Beat re-tests users' SMTP servers; a refused password pauses the server and tells the owner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gateways import health
from gateways.models import SendAsAlias, SmtpServer
from outbox.models import Message

from .conftest import server_for


@pytest.fixture
def alias_server(people, smtp_peer, trust_test_ca):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    server = server_for(partner)
    SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server,
    )
    return server


def age(server: SmtpServer, hours: int) -> None:
    SmtpServer.objects.filter(pk=server.pk).update(
        last_tested_at=timezone.now() - timedelta(hours=hours)
    )


def test_user_gateways_not_tested_for_a_day_are_due_paused_ones_too(people, alias_server):
    age(alias_server, 25)
    fresh = server_for_alias(people, "ann@fresh.test", hours=1)
    paused = server_for_alias(people, "ann@paused.test", hours=30)
    SmtpServer.objects.filter(pk=paused.pk).update(paused_at=timezone.now())
    domain_gateway = SmtpServer.objects.create(host="relay.test", last_tested_at=None)
    people.domain.outbound_gateway = domain_gateway
    people.domain.save()
    assert health.due_for_retest(limit=10) == [paused.pk, alias_server.pk]  # oldest first
    assert fresh.pk not in health.due_for_retest(limit=10)


def server_for_alias(people, address: str, hours: int) -> SmtpServer:
    server = SmtpServer.objects.create(host="smtp.test", username="u", password="p")
    SendAsAlias.objects.create(account=people.user, address=address, smtp_server=server)
    age(server, hours)
    return server


def test_a_working_server_is_marked_tested(people, alias_server):
    age(alias_server, 25)
    health.retest(alias_server.pk)
    alias_server.refresh_from_db()
    assert alias_server.last_tested_at > timezone.now() - timedelta(minutes=1)
    assert not alias_server.is_paused
    assert not Message.objects.exists()


def test_a_changed_password_pauses_the_server_and_tells_its_owner_once(people, alias_server):
    alias_server.password = "changed-elsewhere"  # the user changed it at the partner
    alias_server.save()
    health.retest(alias_server.pk)
    health.retest(alias_server.pk)
    alias_server.refresh_from_db()
    assert alias_server.is_paused and "535" in alias_server.pause_reason
    [notice] = Message.objects.filter(kind=Message.Kind.REPORT)
    assert notice.recipients == [people.user.email]


def test_a_server_that_is_down_is_recorded_but_not_paused(people, alias_server, settings):
    SmtpServer.objects.filter(pk=alias_server.pk).update(port=1)  # nothing listens there
    settings.SENDGATE_SMTP_ALLOWED_PORTS = ["1-65535"]
    health.retest(alias_server.pk)
    alias_server.refresh_from_db()
    assert not alias_server.is_paused
    assert "refused the connection" in alias_server.last_test_summary
