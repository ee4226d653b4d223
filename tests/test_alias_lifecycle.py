"""Editing aliases and their servers, confirmation limits, defaults, the reply preference."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gateways import server_state
from gateways.models import ConnectionTest, SendAsAlias, SmtpServer
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, server_for, submitted


@pytest.fixture
def ann(client, people, smtp_peer, trust_test_ca):
    gateway = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    client.login(username=people.user.email, password=PASSWORD)
    return people, gateway


@pytest.fixture
def partner_alias(ann, smtp_peer):
    people, _gateway = ann
    partner = smtp_peer("ann@partner.org", "partner-secret")
    alias = SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        display_name="Ann P",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    return alias, partner


def edit(client, alias, **fields):
    server = alias.smtp_server
    data = {
        "display_name": alias.display_name,
        "reply_to": "",
        "treat_as_alias": "on",
        "smtp_host": server.host if server else "",
        "smtp_port": server.port if server else "",
        "smtp_security": "starttls",
        "smtp_username": server.username if server else "",
        "smtp_password": "",
    } | fields
    return submitted(client, client.post(reverse("alias_edit", args=[alias.pk]), data))


def test_renaming_an_alias_keeps_its_server_and_runs_no_connection_test(client, partner_alias):
    alias, _partner = partner_alias
    response = edit(client, alias, display_name="Ann Partner")
    assert response.status_code == 302
    alias.refresh_from_db()
    assert alias.display_name == "Ann Partner"
    assert alias.smtp_server.password == "partner-secret"  # blank on edit keeps it
    assert not ConnectionTest.objects.exists()


def test_the_saved_password_is_never_rendered_back(client, partner_alias):
    alias, _partner = partner_alias
    page = client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert "partner-secret" not in page
    assert 'name="smtp_password"' in page


def test_changing_the_host_requires_the_password_again(client, partner_alias):
    alias, _partner = partner_alias
    response = edit(client, alias, smtp_host="smtp.elsewhere.test")
    assert "Enter the password for this server." in response.content.decode()
    alias.refresh_from_db()
    assert alias.smtp_server.host == "localhost"


def test_a_changed_server_is_tested_before_it_is_saved(client, partner_alias):
    alias, partner = partner_alias
    response = edit(client, alias, smtp_password="wrong")
    assert "rejected the username or password" in response.content.decode()
    assert SmtpServer.objects.get(pk=alias.smtp_server.pk).password == "partner-secret"


def test_a_paused_gateway_resumes_after_the_user_enters_the_right_password(
    client, ann, partner_alias
):
    people, gateway = ann
    alias, partner = partner_alias
    server = alias.smtp_server
    server.password = "old-password"
    server.save()
    assert server_state.pause(server.pk, "535 5.7.8 auth failed", people.user, alias.address)
    message = accept_message(people.user, alias.address, ["bob@x.test"], "Hi", "B")
    delivery.deliver(message.pk)
    assert Message.objects.get(pk=message.pk).state == "deferred"  # waits while paused

    page = client.get(reverse("alias_list")).content.decode()
    assert "paused: it refused the password" in page
    edit(client, alias, smtp_password="partner-secret")
    server.refresh_from_db()
    assert not server.is_paused and server.last_test_ok

    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver(message.pk)
    assert Message.objects.get(pk=message.pk).state == "sent"
    assert [m.mail_from for m in partner.messages] == ["ann@partner.org"]
    assert gateway.messages == []


def test_clearing_the_host_removes_the_server_and_its_password(client, partner_alias):
    alias, _partner = partner_alias
    server_pk = alias.smtp_server.pk
    edit(client, alias, smtp_host="", smtp_port="", smtp_username="")
    alias.refresh_from_db()
    assert alias.smtp_server is None
    assert not SmtpServer.objects.filter(pk=server_pk).exists()


def test_with_policy_off_the_edit_page_offers_no_server_fields_and_refuses_them(
    client, ann, partner_alias
):
    people, _gateway = ann
    alias, _partner = partner_alias
    propagate(set_domain_policy(people.domain, False, people.admin).pk)
    page = client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert "id_smtp_host" not in page and "disabled by your administrator" in page
    response = edit(client, alias, smtp_host="smtp.elsewhere.test", smtp_password="x")
    assert "does not allow per-user outbound gateways" in response.content.decode()
    alias.refresh_from_db()
    assert alias.smtp_server.host == "localhost"


def test_connection_tests_are_rate_limited_per_account(client, ann, settings, smtp_peer):
    settings.SENDGATE_CONNECTION_TESTS_PER_HOUR = 2
    partner = smtp_peer("ann@partner.org", "partner-secret")
    for n in range(3):
        response = client.post(
            reverse("alias_list"),
            {
                "address": f"ann{n}@partner.org",
                "smtp_host": "localhost",
                "smtp_port": partner.port,
                "smtp_security": "starttls",
                "smtp_username": partner.login,
                "smtp_password": "bad",
            },
        )
    assert "Too many connection tests in the last hour" in response.content.decode()
    assert ConnectionTest.objects.count() == 2


def confirmation_code(gateway, address: str) -> str:
    for pk in Message.objects.filter(recipients=[address]).values_list("pk", flat=True):
        delivery.deliver(pk)
    mail = [m for m in gateway.messages if m.rcpt_tos == [address]][-1]
    return re.search(r"Confirmation code: (\d{6})", mail.message.get_content()).group(1)


def test_the_confirmation_link_fills_in_the_code_but_only_a_post_confirms(client, ann):
    people, gateway = ann
    client.post(reverse("alias_list"), {"address": "ann@partner.org"})
    alias = SendAsAlias.objects.get()
    code = confirmation_code(gateway, "ann@partner.org")
    mail = gateway.messages[-1].message.get_content()
    assert f"/settings/send-as/{alias.pk}/confirm/?code={code}" in mail
    page = client.get(reverse("alias_confirm", args=[alias.pk]), {"code": code}).content.decode()
    assert f'value="{code}"' in page
    alias.refresh_from_db()
    assert not alias.is_verified


def test_five_wrong_codes_lock_the_confirmation_until_a_new_code_is_sent(client, ann):
    people, gateway = ann
    client.post(reverse("alias_list"), {"address": "ann@partner.org"})
    alias = SendAsAlias.objects.get()
    code = confirmation_code(gateway, "ann@partner.org")
    url = reverse("alias_confirm", args=[alias.pk])
    for _ in range(5):
        client.post(url, {"code": "000000" if code != "000000" else "111111"})
    response = client.post(url, {"code": code})
    assert "Too many wrong codes" in response.content.decode()
    client.post(reverse("alias_resend", args=[alias.pk]))
    fresh = confirmation_code(gateway, "ann@partner.org")
    client.post(url, {"code": fresh})
    alias.refresh_from_db()
    assert alias.is_verified


def test_an_expired_code_is_refused(client, ann, settings):
    people, gateway = ann
    client.post(reverse("alias_list"), {"address": "ann@partner.org"})
    alias = SendAsAlias.objects.get()
    code = confirmation_code(gateway, "ann@partner.org")
    SendAsAlias.objects.filter(pk=alias.pk).update(
        confirmation_sent_at=timezone.now() - timedelta(hours=73)
    )
    response = client.post(reverse("alias_confirm", args=[alias.pk]), {"code": code})
    assert "expired" in response.content.decode()
    alias.refresh_from_db()
    assert not alias.is_verified


def test_make_default_moves_the_default_and_compose_preselects_it(client, ann, partner_alias):
    people, _gateway = ann
    alias, _partner = partner_alias
    other = SendAsAlias.objects.create(
        account=people.user,
        address="ann@third.test",
        state=SendAsAlias.State.VERIFIED,
        is_default=True,
    )
    client.post(reverse("alias_make_default", args=[alias.pk]))
    assert list(SendAsAlias.objects.filter(is_default=True)) == [alias]
    other.refresh_from_db()
    assert not other.is_default
    page = client.get(reverse("compose")).content.decode()
    assert re.search(r'<option value="ann@partner.org"[^>]*selected', page)


def test_an_unverified_alias_cannot_become_the_default(client, ann):
    people, _gateway = ann
    pending = SendAsAlias.objects.create(account=people.user, address="ann@pending.test")
    assert client.post(reverse("alias_make_default", args=[pending.pk])).status_code == 404


def test_reply_preference_is_saved(client, ann):
    people, _gateway = ann
    client.post(reverse("reply_preference"), {"reply_from_received_address": "0"})
    people.user.refresh_from_db()
    assert not people.user.reply_from_received_address
