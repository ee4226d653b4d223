"""The end user's send-as page: add an alias, prove it, attach a server only where allowed."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from gateways.models import SendAsAlias, SmtpServer
from outbound import delivery
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, server_for


@pytest.fixture
def ann(client, people, smtp_peer, trust_test_ca):
    gateway = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    client.login(username=people.user.email, password=PASSWORD)
    return people, gateway


def allow(people) -> None:
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()


def deliver_all() -> None:
    for pk in Message.objects.values_list("pk", flat=True):
        delivery.deliver(pk)


def alias_form(**extra) -> dict:
    return {"display_name": "Ann P", "address": "ann@partner.org", "treat_as_alias": "on"} | extra


def test_external_alias_stays_pending_until_the_mailed_code_is_entered(client, ann):
    people, gateway = ann
    response = client.post(reverse("alias_list"), alias_form())
    alias = SendAsAlias.objects.get(account=people.user)
    assert response.status_code == 302 and alias.state == SendAsAlias.State.PENDING

    deliver_all()  # the confirmation mail leaves through the domain path
    [mail] = gateway.messages
    assert mail.rcpt_tos == ["ann@partner.org"]
    code = re.search(r"\b(\d{6})\b", mail.message.get_content()).group(1)

    wrong = client.post(reverse("alias_confirm", args=[alias.pk]), {"code": "000000"})
    assert "That code is not right" in wrong.content.decode()
    client.post(reverse("alias_confirm", args=[alias.pk]), {"code": code})
    alias.refresh_from_db()
    assert alias.is_verified


def test_pending_alias_is_not_offered_in_compose_and_cannot_be_used(client, ann):
    people, _gateway = ann
    client.post(reverse("alias_list"), alias_form())
    page = client.get(reverse("compose")).content.decode()
    assert 'value="ann@partner.org"' not in page
    client.post(reverse("compose"), {"from_address": "ann@partner.org", "to": "b@x.test"})
    assert not Message.objects.filter(from_address="ann@partner.org").exists()


def test_smtp_fields_are_not_offered_while_policy_is_off_and_a_forced_post_is_refused(client, ann):
    people, _gateway = ann
    page = client.get(reverse("alias_list")).content.decode()
    assert "id_smtp_host" not in page
    assert "does not allow per-user SMTP servers" in page

    response = client.post(
        reverse("alias_list"), alias_form(smtp_host="smtp.partner.org", smtp_port="587")
    )
    assert "does not allow per-user outbound gateways" in response.content.decode()
    assert (
        not SendAsAlias.objects.exists()
        and not SmtpServer.objects.exclude(gateway_of_domain__isnull=False).exists()
    )


def test_alias_with_a_working_server_is_saved_after_a_live_connection_test(client, ann, smtp_peer):
    people, _gateway = ann
    partner = smtp_peer("ann@partner.org", "partner-secret")
    allow(people)
    client.post(
        reverse("alias_list"),
        alias_form(
            smtp_host="localhost",
            smtp_port=partner.port,
            smtp_security="starttls",
            smtp_username=partner.login,
            smtp_password=partner.password,
        ),
    )
    server = SendAsAlias.objects.get().smtp_server
    assert (server.host, server.port, server.last_test_ok) == ("localhost", partner.port, True)
    assert server.password == "partner-secret"
    page = client.get(reverse("alias_list")).content.decode()
    assert "partner-secret" not in page  # the password is never shown back


def test_failed_connection_test_shows_the_reason_and_transcript_and_saves_nothing(
    client, ann, smtp_peer
):
    people, _gateway = ann
    partner = smtp_peer("ann@partner.org", "partner-secret")
    allow(people)
    response = client.post(
        reverse("alias_list"),
        alias_form(
            smtp_host="localhost",
            smtp_port=partner.port,
            smtp_security="starttls",
            smtp_username=partner.login,
            smtp_password="wrong",
        ),
    )
    page = response.content.decode()
    assert "rejected the username or password" in page
    assert "C: AUTH (credentials hidden)" in page and "wrong" not in page.split("transcript")[-1]
    assert not SendAsAlias.objects.exists()


def test_alias_server_is_kept_but_shown_disabled_when_the_admin_turns_the_policy_off(
    client, ann, smtp_peer
):
    people, _gateway = ann
    allow(people)
    partner = smtp_peer("ann@partner.org", "partner-secret")
    SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    propagate(set_domain_policy(people.domain, False, people.admin).pk)
    page = client.get(reverse("alias_list")).content.decode()
    assert "disabled by your administrator" in page
    assert SendAsAlias.objects.get().smtp_server.password == "partner-secret"


def test_hosted_domain_addresses_cannot_be_claimed(client, ann):
    response = client.post(reverse("alias_list"), alias_form(address="admin@example.com"))
    assert "managed by your administrator" in response.content.decode()
    assert not SendAsAlias.objects.exists()


@pytest.mark.parametrize("field", ["display_name", "address", "reply_to"])
def test_line_breaks_in_header_fields_are_refused(client, ann, field):
    response = client.post(reverse("alias_list"), alias_form(**{field: "x@y.test\r\nBcc: e@v.il"}))
    assert response.status_code == 200
    assert not SendAsAlias.objects.exists()


def test_deleting_an_alias_deletes_its_stored_credentials(client, ann, smtp_peer):
    people, _gateway = ann
    partner = smtp_peer("ann@partner.org", "partner-secret")
    alias = SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", smtp_server=server_for(partner)
    )
    client.post(reverse("alias_delete", args=[alias.pk]))
    assert not SendAsAlias.objects.exists()
    assert not SmtpServer.objects.filter(username="ann@partner.org").exists()


def test_compose_queues_the_message_and_shows_its_route_once_sent(client, ann):
    people, gateway = ann
    response = client.post(
        reverse("compose"),
        {
            "from_address": people.user.email,
            "to": "bob@elsewhere.test, carl@elsewhere.test",
            "subject": "Lunch",
            "body": "At noon?",
        },
    )
    message = Message.objects.get()
    assert response["Location"] == reverse("sent_detail", args=[message.pk])
    delivery.deliver(message.pk)
    page = client.get(response["Location"]).content.decode()
    assert 'data-state="sent"' in page and 'data-route="domain_gateway"' in page
    assert gateway.messages[0].rcpt_tos == ["bob@elsewhere.test", "carl@elsewhere.test"]
    assert "Lunch" in client.get(reverse("sent_list")).content.decode()


def test_an_address_at_an_ip_address_is_refused(client, ann):
    response = client.post(reverse("alias_list"), alias_form(address="x@[127.0.0.1]"))
    assert "not at an IP address" in response.content.decode()
    assert not SendAsAlias.objects.exists()


def test_an_impossible_port_gets_one_error_that_says_what_to_enter(client, ann):
    people, _gateway = ann
    allow(people)
    response = client.post(
        reverse("alias_list"),
        alias_form(
            smtp_host="smtp.partner.org", smtp_port="99999", smtp_username="u", smtp_password="p"
        ),
    )
    page = response.content.decode()
    assert page.count("Enter a port from 1 to 65535, usually 587 or 465.") == 1
    assert "Enter the server&#x27;s port" not in page and "Enter the server's port" not in page
    assert not SendAsAlias.objects.exists()


def test_the_confirmation_comes_from_the_system_address_and_is_not_the_users_sent_mail(
    client, ann, settings
):
    people, gateway = ann
    settings.SENDGATE_SYSTEM_FROM = "Example IT <it-desk@example.com>"
    client.post(reverse("alias_list"), alias_form())
    deliver_all()
    [mail] = gateway.messages
    assert mail.message["From"] == "Example IT <it-desk@example.com>"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.mail_from == "<>"  # null sender: a bounce of it cannot loop back
    assert mail.message["Sender"] is None
    sent_page = client.get(reverse("sent_list")).content.decode()
    assert "Confirm sending as" not in sent_page
    assert Message.objects.get().kind == Message.Kind.REPORT


def test_an_unusable_system_address_stops_the_start(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.SENDGATE_SYSTEM_FROM = "IT desk <it desk at example>"
    with pytest.raises(SystemCheckError, match="SENDGATE_SYSTEM_FROM is not a usable address"):
        call_command("check")
