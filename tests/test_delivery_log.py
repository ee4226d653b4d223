"""The domain admin's delivery log: filters, live counters, scoping."""

from __future__ import annotations

import pytest
from django.urls import reverse

from outbox.models import Message

from .conftest import PASSWORD


def message(account, state: str, route: str = "domain_gateway", subject: str = "") -> Message:
    return Message.objects.create(
        account=account,
        from_address=account.email,
        recipients=["b@x.test"],
        subject=subject,
        message_id=f"<{subject}@x>",
        raw=b"Subject: x\r\n\r\nx",
        state=state,
        last_route=route,
    )


@pytest.fixture
def log(client, people):
    message(people.user, "sent", "user_gateway", "via-partner")
    message(people.user, "deferred", "domain_gateway", "waiting")
    message(people.admin, "sent", "domain_gateway", "admin-mail")
    message(people.outsider, "sent", "domain_gateway", "other-domain")
    client.login(username=people.admin.email, password=PASSWORD)
    return people


def test_admin_sees_the_domains_mail_and_filters_it(client, log):
    url = reverse("delivery_log", args=[log.domain.pk])
    page = client.get(url).content.decode()
    assert page.count("ann@example.com") >= 2 and "zoe@other.example" not in page

    only_user_gateway = client.get(url, {"route": "user_gateway"}).content.decode()
    assert "Per-user gateway" in only_user_gateway
    assert only_user_gateway.count('class="state-sent"') == 1

    deferred = client.get(url, {"state": "deferred"}).content.decode()
    assert deferred.count('class="state-deferred"') == 1

    by_account = client.get(url, {"account": "admin@"}).content.decode()
    assert by_account.count("<tr><td><a href") == 1


def test_counters_count_the_domain_only_and_keep_polling(client, log):
    partial = client.get(reverse("delivery_counters", args=[log.domain.pk])).content.decode()
    assert 'data-counter="sent">2<' in partial
    assert 'data-counter="deferred">1<' in partial
    assert 'hx-trigger="every 2s"' in partial


def test_admin_can_open_a_domain_message_but_not_another_domains(client, log):
    own = Message.objects.get(subject="waiting")
    other = Message.objects.get(subject="other-domain")
    assert client.get(reverse("delivery_detail", args=[log.domain.pk, own.pk])).status_code == 200
    response = client.get(reverse("delivery_detail", args=[log.domain.pk, other.pk]))
    assert response.status_code == 404


def test_users_and_other_admins_get_404(client, people):
    for account in (people.user, people.outsider):
        client.login(username=account.email, password=PASSWORD)
        for name in ("delivery_log", "delivery_counters"):
            assert client.get(reverse(name, args=[people.domain.pk])).status_code == 404


def test_admin_can_require_tls_for_direct_delivery_and_outsiders_cannot(client, people):
    url = reverse("direct_delivery_tls", args=[people.domain.pk])
    client.login(username=people.outsider.email, password=PASSWORD)
    assert client.post(url, {"require_tls_direct": "1"}).status_code == 404
    client.login(username=people.admin.email, password=PASSWORD)
    assert (
        "Require TLS with a valid certificate"
        in client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    )
    client.post(url, {"require_tls_direct": "1"})
    people.domain.refresh_from_db()
    assert people.domain.require_tls_direct
