"""The domain admin's outbound gateway page: tested over a real connection before it is saved."""

from __future__ import annotations

import html

import pytest
from django.db import connection
from django.urls import reverse

from directory.models import AuditEvent, Domain
from gateways.models import SmtpServer

from .conftest import PASSWORD


@pytest.fixture
def admin_client(client, people, trust_test_ca):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


def gateway_form(peer, **extra) -> dict:
    return {
        "mode": "gateway",
        "smtp_host": "localhost",
        "smtp_port": peer.port,
        "smtp_security": "starttls",
        "smtp_username": peer.login,
        "smtp_password": peer.password,
    } | extra


def test_gateway_is_saved_after_a_live_test_with_an_encrypted_write_only_password(
    admin_client, people, smtp_peer
):
    relay = smtp_peer("relay@example.com", "relay-secret")
    url = reverse("domain_gateway", args=[people.domain.pk])
    page = admin_client.get(url).content.decode()
    assert "127.0.0.0/8" in page and "SENDGATE_SMTP_ALLOWED_NETWORKS" in page

    response = admin_client.post(url, gateway_form(relay), follow=True)
    assert "passed its connection test and is saved" in response.content.decode()
    domain = Domain.objects.get(pk=people.domain.pk)
    server = domain.outbound_gateway
    assert (server.host, server.port, server.username, server.password) == (
        "localhost",
        relay.port,
        "relay@example.com",
        "relay-secret",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM gateways_smtpserver WHERE id = %s", [server.pk])
        assert "relay-secret" not in cursor.fetchone()[0]  # encrypted at rest
    assert "relay-secret" not in admin_client.get(url).content.decode()
    event = AuditEvent.objects.get(action="gateway_changed")
    assert event.actor == people.admin and f"localhost:{relay.port}" in event.detail
    assert "relay-secret" not in event.detail

    # Saving again without the password keeps it (same host and username).
    admin_client.post(url, gateway_form(relay, smtp_password=""))
    server.refresh_from_db()
    assert server.password == "relay-secret"


def test_a_gateway_that_fails_its_test_is_not_saved_and_the_transcript_hides_the_password(
    admin_client, people, smtp_peer
):
    relay = smtp_peer("relay@example.com", "relay-secret")
    url = reverse("domain_gateway", args=[people.domain.pk])
    page = admin_client.post(url, gateway_form(relay, smtp_password="wrong-pass")).content.decode()
    assert "rejected the username or password" in page
    assert "C: AUTH PLAIN (credentials hidden)" in page and "wrong-pass" not in page
    assert Domain.objects.get(pk=people.domain.pk).outbound_gateway is None
    assert not AuditEvent.objects.exists()


def test_private_addresses_outside_the_allowed_networks_are_refused(
    admin_client, people, smtp_peer, settings
):
    relay = smtp_peer("relay@example.com", "relay-secret")
    settings.SENDGATE_SMTP_ALLOWED_NETWORKS = []
    url = reverse("domain_gateway", args=[people.domain.pk])
    page = admin_client.post(url, gateway_form(relay)).content.decode()
    assert "Not allowed" in page and "SENDGATE_SMTP_ALLOWED_NETWORKS is empty" in page
    assert Domain.objects.get(pk=people.domain.pk).outbound_gateway is None


def test_switching_to_direct_delivery_deletes_the_gateway_and_its_password(
    admin_client, people, smtp_peer
):
    relay = smtp_peer("relay@example.com", "relay-secret")
    url = reverse("domain_gateway", args=[people.domain.pk])
    admin_client.post(url, gateway_form(relay))
    server_pk = Domain.objects.get(pk=people.domain.pk).outbound_gateway_id
    response = admin_client.post(url, {"mode": "direct"}, follow=True)
    assert "directly to the recipients' servers" in html.unescape(response.content.decode())
    assert Domain.objects.get(pk=people.domain.pk).outbound_gateway is None
    assert not SmtpServer.objects.filter(pk=server_pk).exists()
    assert AuditEvent.objects.filter(action="gateway_changed").count() == 2


@pytest.mark.parametrize(
    ("extra", "field_error"),
    [
        ({"smtp_host": ""}, "Enter the gateway&#x27;s host name."),
        ({"smtp_username": ""}, "Enter the username that goes with the password."),
        ({"smtp_password": ""}, "Enter the password for this server."),
    ],
)
def test_gateway_form_errors(admin_client, people, smtp_peer, extra, field_error):
    relay = smtp_peer("relay@example.com", "relay-secret")
    url = reverse("domain_gateway", args=[people.domain.pk])
    page = admin_client.post(url, gateway_form(relay, **extra)).content.decode()
    assert field_error in page
    assert Domain.objects.get(pk=people.domain.pk).outbound_gateway is None
