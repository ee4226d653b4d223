"""Connection tests run in a worker: the page says "Testing…", polls, and saves once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gateways.connection_test import run_test
from gateways.models import ConnectionTest, SendAsAlias
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ann(client, people, trust_test_ca):
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    client.login(username=people.user.email, password=PASSWORD)
    return people


def add_alias(client, peer, password: str):
    return client.post(
        reverse("alias_list"),
        {
            "display_name": "Ann P",
            "address": "ann@partner.org",
            "smtp_host": "localhost",
            "smtp_port": peer.port,
            "smtp_security": "starttls",
            "smtp_username": peer.login,
            "smtp_password": password,
        },
    )


def test_the_request_only_starts_the_test_and_the_page_polls_until_it_is_done(
    client, ann, smtp_peer
):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    response = add_alias(client, partner, "partner-secret")
    test = ConnectionTest.objects.get()
    assert response["Location"] == reverse("alias_list") + f"?test={test.pk}"
    assert test.is_running and not SendAsAlias.objects.exists()
    assert partner.handler.messages == [] and test.password == "partner-secret"

    page = client.get(response["Location"]).content.decode()
    status = reverse("connection_test_status", args=[test.pk])
    assert "Testing the connection to localhost…" in page
    assert '<button type="submit" disabled>Testing…</button>' in page
    assert f'hx-get="{status}" hx-trigger="every 1s"' in page
    assert 'value="ann@partner.org"' in page  # the form shows what is being tested
    assert "partner-secret" not in page

    partial = client.get(status, headers=HTMX)
    assert partial.status_code == 200 and "Testing…" in partial.content.decode()

    run_test(test.pk)  # what the worker does
    done = client.get(status, headers=HTMX)
    alias = SendAsAlias.objects.get()
    assert done["HX-Redirect"] == reverse("alias_confirm", args=[alias.pk])
    assert alias.smtp_server.password == "partner-secret" and alias.smtp_server.last_test_ok
    assert not ConnectionTest.objects.get().password  # kept only until saved

    again = client.get(status, headers=HTMX)  # another tab, a late poll: saved only once
    assert again["HX-Redirect"] == done["HX-Redirect"]
    assert SendAsAlias.objects.count() == 1
    assert Message.objects.filter(subject__startswith="Confirm sending as").count() == 1


def test_a_failed_test_shows_why_and_forgets_the_password(client, ann, smtp_peer):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "wrong")
    test = ConnectionTest.objects.get()
    run_test(test.pk)
    partial = client.get(
        reverse("connection_test_status", args=[test.pk]), headers=HTMX
    ).content.decode()
    assert "rejected the username or password" in partial
    assert "C: AUTH PLAIN (credentials hidden)" in partial
    assert '<button type="submit">Add address</button>' in partial  # try again
    assert "hx-trigger" not in partial  # polling stops
    assert not ConnectionTest.objects.get().password
    assert not SendAsAlias.objects.exists()


def test_tests_still_running_count_towards_the_hourly_limit(client, ann, smtp_peer, settings):
    settings.SENDGATE_CONNECTION_TESTS_PER_HOUR = 2
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "partner-secret")
    add_alias(client, partner, "partner-secret")
    response = add_alias(client, partner, "partner-secret")
    assert response.status_code == 200
    assert "Too many connection tests in the last hour" in response.content.decode()
    assert ConnectionTest.objects.count() == 2
    assert set(ConnectionTest.objects.values_list("state", flat=True)) == {"running"}


def test_a_test_run_twice_dials_once(client, ann, smtp_peer):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "partner-secret")
    test = ConnectionTest.objects.get()
    run_test(test.pk)
    first = ConnectionTest.objects.get().finished_at
    run_test(test.pk)  # a redelivered task
    assert ConnectionTest.objects.get().finished_at == first


def test_turning_the_policy_off_before_the_result_saves_nothing(client, ann, smtp_peer):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "partner-secret")
    test = ConnectionTest.objects.get()
    run_test(test.pk)
    propagate(set_domain_policy(ann.domain, False, ann.admin).pk)
    page = client.get(
        reverse("connection_test_status", args=[test.pk]), follow=True
    ).content.decode()
    assert "nothing was saved" in page
    assert not SendAsAlias.objects.exists()


def test_someone_elses_test_is_not_found(client, ann, smtp_peer):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "partner-secret")
    test = ConnectionTest.objects.get()
    alias = SendAsAlias.objects.create(account=ann.user, address="ann@other.test")
    client.logout()
    client.login(username=ann.outsider.email, password=PASSWORD)
    assert client.get(reverse("alias_list") + f"?test={test.pk}").status_code == 404
    assert client.get(reverse("connection_test_status", args=[test.pk])).status_code == 404
    client.logout()
    client.login(username=ann.user.email, password=PASSWORD)
    # Ann's own test, shown on another alias's edit page: not found either.
    assert (
        client.get(reverse("alias_edit", args=[alias.pk]) + f"?test={test.pk}").status_code == 404
    )


def test_a_test_no_worker_runs_is_given_up_instead_of_polled_forever(client, ann, smtp_peer):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    add_alias(client, partner, "partner-secret")
    test = ConnectionTest.objects.get()
    status = reverse("connection_test_status", args=[test.pk])
    assert "Testing…" in client.get(status, headers=HTMX).content.decode()  # just started

    ConnectionTest.objects.update(created_at=timezone.now() - timedelta(minutes=15))
    partial = client.get(status, headers=HTMX).content.decode()
    assert "no delivery worker picked it up" in partial and "hx-trigger" not in partial
    assert not ConnectionTest.objects.get().password
    run_test(test.pk)  # a worker that comes back later does nothing with it
    assert not SendAsAlias.objects.exists() and partner.handler.messages == []
