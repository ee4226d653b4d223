"""Scoping: another domain's (or another user's) objects are a 404, never a 403."""

from __future__ import annotations

import pytest
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential

from directory.models import Account, AuditEvent
from domainkeys.models import DkimKey
from gateways.models import ConnectionTest, SendAsAlias
from outbound.models import AppPassword
from outbox.models import Message
from signin.models import ConsoleSession

from .conftest import PASSWORD


@pytest.fixture
def ann_objects(people):
    dkim_key = DkimKey.objects.create(
        domain=people.domain, selector="sg1", algorithm="rsa", private_key="x", public_key="y"
    )
    alias = SendAsAlias.objects.create(account=people.user, address="ann@partner.org")
    message = Message.objects.create(
        account=people.user,
        from_address=people.user.email,
        recipients=["b@x.test"],
        message_id="<m@example.com>",
        raw=b"Subject: x\r\n\r\nx",
    )
    return alias, message, dkim_key


def login(client, account) -> None:
    assert client.login(username=account.email, password=PASSWORD)


def id_pages(people, alias, message, dkim_key) -> list[tuple[str, str]]:
    domain, unit = people.domain.pk, people.domain.root_unit.pk
    app_password = AppPassword.objects.create(account=people.user, name="x", password_hash="x")
    test = ConnectionTest.objects.create(account=people.user, host="smtp.partner.test")
    session = ConsoleSession.objects.create(
        account=people.user, session_key="ann-laptop", last_seen_at=timezone.now()
    )
    passkey = WebAuthnCredential.objects.create(
        user=people.user, name="Laptop", credential_id=b"x", public_key=b"y", sign_count=0
    )
    return [
        ("post", reverse("session_end", args=[session.pk])),
        ("post", reverse("passkey_remove", args=[passkey.pk])),
        ("get", reverse("connection_test_status", args=[test.pk])),
        ("post", reverse("sent_retry", args=[message.pk])),
        ("post", reverse("delivery_retry", args=[domain])),
        ("post", reverse("delivery_retry_message", args=[domain, message.pk])),
        ("get", reverse("unit_list", args=[domain])),
        ("get", reverse("unit_search", args=[domain])),
        ("get", reverse("unit_branch", args=[domain, unit])),
        ("get", reverse("policy_branch", args=[domain, unit])),
        ("post", reverse("unit_list", args=[domain])),
        ("get", reverse("unit_detail", args=[domain, unit])),
        ("post", reverse("unit_detail", args=[domain, unit])),
        ("get", reverse("unit_delete", args=[domain, unit])),
        ("post", reverse("unit_policy", args=[domain, unit])),
        ("post", reverse("direct_delivery_tls", args=[domain])),
        ("get", reverse("audit_log", args=[domain])),
        ("get", reverse("delivery_log", args=[domain])),
        ("get", reverse("delivery_counters", args=[domain])),
        ("get", reverse("delivery_detail", args=[domain, message.pk])),
        ("get", reverse("alias_deliverability", args=[alias.pk])),
        ("post", reverse("app_password_revoke", args=[app_password.pk])),
        ("get", reverse("account_list", args=[domain])),
        ("post", reverse("account_list", args=[domain])),
        ("get", reverse("account_add", args=[domain])),
        ("post", reverse("account_add", args=[domain])),
        ("get", reverse("account_import", args=[domain])),
        ("post", reverse("account_import", args=[domain])),
        ("get", reverse("account_import_progress", args=[domain])),
        ("get", reverse("account_detail", args=[domain, people.user.pk])),
        ("post", reverse("account_detail", args=[domain, people.user.pk])),
        ("get", reverse("domain_gateway", args=[domain])),
        ("post", reverse("domain_gateway", args=[domain])),
        ("get", reverse("operator_domain", args=[domain])),
        ("post", reverse("operator_domain_verify", args=[domain])),
        ("get", reverse("alias_confirm", args=[alias.pk])),
        ("post", reverse("alias_resend", args=[alias.pk])),
        ("get", reverse("alias_delete", args=[alias.pk])),
        ("post", reverse("alias_delete", args=[alias.pk])),
        ("get", reverse("alias_edit", args=[alias.pk])),
        ("post", reverse("alias_edit", args=[alias.pk])),
        ("post", reverse("alias_make_default", args=[alias.pk])),
        ("post", reverse("alias_sign_in", args=[alias.pk, "generic"])),
        ("get", reverse("sent_detail", args=[message.pk])),
        ("post", reverse("sent_retry", args=[message.pk])),
        ("post", reverse("delivery_retry", args=[people.domain.pk])),
        ("post", reverse("delivery_retry_message", args=[people.domain.pk, message.pk])),
        ("get", reverse("domain_policy", args=[people.domain.pk])),
        ("post", reverse("domain_policy", args=[people.domain.pk])),
        ("get", reverse("propagation_progress", args=[people.domain.pk])),
        ("get", reverse("dkim_keys", args=[people.domain.pk])),
        ("post", reverse("dkim_keys", args=[people.domain.pk])),
        ("post", reverse("dkim_key_check", args=[people.domain.pk, dkim_key.pk])),
        ("get", reverse("dkim_key_delete", args=[people.domain.pk, dkim_key.pk])),
        ("post", reverse("dkim_key_delete", args=[people.domain.pk, dkim_key.pk])),
        # The outsider's own domain in the URL, someone else's key: still a 404.
        ("post", reverse("dkim_key_check", args=[people.outsider.domain.pk, dkim_key.pk])),
        ("get", reverse("domain_sign_in", args=[people.domain.pk])),
        ("post", reverse("domain_sign_in", args=[people.domain.pk])),
        ("post", reverse("domain_unlock", args=[people.domain.pk])),
    ]


# What a hostile form would carry: every action the pages know, pointed at this domain's objects.
HOSTILE = {
    "allow_user_gateways": "1",
    "require_two_step_for_admins": "on",
    "action": "deactivate",
    "accounts": ["1", "2", "3"],
    "email": "new@example.com",
    "mode": "direct",
    "require_tls_direct": "1",
    "name": "Renamed",
}


def test_outsider_gets_404_on_every_page_that_takes_an_id(client, people, ann_objects):
    people.outsider.administered_domains.add(people.outsider.domain)  # an admin, elsewhere
    login(client, people.outsider)
    for method, url in id_pages(people, *ann_objects):
        response = getattr(client, method)(url, HOSTILE)
        assert response.status_code == 404, (method, url)
    assert SendAsAlias.objects.filter(pk=ann_objects[0].pk).exists()
    assert not people.domain.policy_changes.exists()
    assert Account.objects.filter(domain=people.domain, is_active=True).count() == 2
    assert not AuditEvent.objects.exists()
    assert DkimKey.objects.get(pk=ann_objects[2].pk).checked_at is None
    assert DkimKey.objects.count() == 1
    people.domain.refresh_from_db()
    assert not people.domain.require_two_step_for_admins


def _routes_with_ids(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes_with_ids(pattern.url_patterns, prefix + str(pattern.pattern))
        elif "<int:" in prefix + str(pattern.pattern):
            yield pattern.name


def test_every_url_that_takes_an_id_is_in_the_outsider_sweep(people, ann_objects):
    """A new page with an object id in its URL fails here until it is added to id_pages."""
    swept = {resolve(url).url_name for _method, url in id_pages(people, *ann_objects)}
    missing = set(_routes_with_ids(get_resolver().url_patterns)) - swept
    assert not missing, f"add these to id_pages: {sorted(missing)}"


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
