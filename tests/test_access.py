"""Scoping: another domain's (or another user's) objects are a 404, never a 403."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gateways.models import SendAsAlias
from outbox.models import Message

from .conftest import PASSWORD


@pytest.fixture
def ann_objects(people):
    alias = SendAsAlias.objects.create(account=people.user, address="ann@partner.org")
    message = Message.objects.create(
        account=people.user,
        from_address=people.user.email,
        recipients=["b@x.test"],
        message_id="<m@example.com>",
        raw=b"Subject: x\r\n\r\nx",
    )
    return alias, message


def login(client, account) -> None:
    assert client.login(username=account.email, password=PASSWORD)


def id_pages(people, alias, message) -> list[tuple[str, str]]:
    return [
        ("get", reverse("alias_confirm", args=[alias.pk])),
        ("post", reverse("alias_resend", args=[alias.pk])),
        ("get", reverse("alias_delete", args=[alias.pk])),
        ("post", reverse("alias_delete", args=[alias.pk])),
        ("get", reverse("alias_edit", args=[alias.pk])),
        ("post", reverse("alias_edit", args=[alias.pk])),
        ("post", reverse("alias_make_default", args=[alias.pk])),
        ("post", reverse("alias_sign_in", args=[alias.pk, "generic"])),
        ("get", reverse("sent_detail", args=[message.pk])),
        ("get", reverse("domain_policy", args=[people.domain.pk])),
        ("post", reverse("domain_policy", args=[people.domain.pk])),
        ("get", reverse("propagation_progress", args=[people.domain.pk])),
    ]


def test_outsider_gets_404_on_every_page_that_takes_an_id(client, people, ann_objects):
    login(client, people.outsider)
    for method, url in id_pages(people, *ann_objects):
        response = getattr(client, method)(url, {"allow_user_gateways": "1"})
        assert response.status_code == 404, (method, url)
    assert SendAsAlias.objects.filter(pk=ann_objects[0].pk).exists()
    assert not people.domain.policy_changes.exists()


def test_plain_user_cannot_reach_admin_pages(client, people):
    login(client, people.user)
    assert client.get(reverse("domain_list")).status_code == 404
    assert client.get(reverse("domain_policy", args=[people.domain.pk])).status_code == 404


def test_admin_of_another_domain_cannot_see_this_domain(client, people):
    people.outsider.administered_domains.add(people.outsider.domain)
    login(client, people.outsider)
    page = client.get(reverse("domain_list")).content.decode()
    assert "other.example" in page and "example.com</a>" not in page
    assert client.get(reverse("domain_policy", args=[people.domain.pk])).status_code == 404


def test_anonymous_visitor_is_sent_to_login(client, people, ann_objects):
    for _method, url in id_pages(people, *ann_objects):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_health_endpoint_answers_without_login(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
