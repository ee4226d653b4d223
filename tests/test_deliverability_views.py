"""The deliverability hint and the SRV pre-fill on the send-as page; DNS from a table."""

from __future__ import annotations

import time
from datetime import timedelta

import dns.exception as dns_exception
import pytest
from django.urls import reverse
from django.utils import timezone

from gateways import deliverability_checks
from gateways.models import DeliverabilityCheck, SendAsAlias, SmtpServer
from mailkit import dns

from .conftest import PASSWORD
from .fake_dns import TIMEOUT, FakeResolver, txt

PARTNER = {
    ("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")],
    ("partner.org", "TXT"): [txt("v=spf1 ip4:192.0.2.0/24 -all")],
    ("smtp.partner.org", "A"): ["192.0.2.25"],
    ("_submissions._tcp.partner.org", "SRV"): ["0 1 465 smtp.partner.org."],
    ("_submission._tcp.partner.org", "SRV"): ["10 1 587 smtp.partner.org."],
}


@pytest.fixture
def public_dns(monkeypatch):
    """Replace the public DNS (unreachable here) with a table; return a setter for the table."""
    resolver = FakeResolver(PARTNER)
    monkeypatch.setattr(dns, "default_resolver", lambda: resolver)

    def use(table: dict) -> FakeResolver:
        resolver.__init__(table)
        return resolver

    return use


@pytest.fixture
def ann_alias(people):
    server = SmtpServer.objects.create(
        host="smtp.partner.org", port=465, security="tls", username="ann", last_test_ok=True
    )
    return SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server,
    )


def login(client, account) -> None:
    assert client.login(username=account.email, password=PASSWORD)


def checked(client, url: str, **kwargs):
    """Open the hint, let a worker do the DNS look-ups it asked for, and open it again."""
    first = client.get(url, **kwargs)
    if first.status_code != 200:
        return first
    for pk in DeliverabilityCheck.objects.filter(finished_at__isnull=True).values_list(
        "pk", flat=True
    ):
        deliverability_checks.run(pk)
    return client.get(url, **kwargs)


def test_outsider_gets_404_on_the_deliverability_of_someone_elses_alias(
    client, people, ann_alias, public_dns
):
    login(client, people.outsider)
    url = reverse("alias_deliverability", args=[ann_alias.pk])
    assert client.get(url).status_code == 404
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 404


def test_the_owner_gets_the_partial_with_a_sentence_per_path(client, people, ann_alias, public_dns):
    people.user.gateways_allowed = True
    people.user.save()
    login(client, people.user)
    response = checked(
        client,
        reverse("alias_deliverability", args=[ann_alias.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # the partial alone, for htmx to swap in
    assert (
        "partner.org publishes p=reject: mail sent as this alias through example.com&#x27;s "
        "servers is likely to be rejected." in html
    )
    assert "Through smtp.partner.org it passes SPF for partner.org." in html
    assert html.count("used now") == 1
    used = html[html.index("data-in-use") :]
    assert "smtp.partner.org" in used[: used.index("used now")]  # the gateway is the path used
    assert "not signed with DKIM yet" in html


def test_without_htmx_the_link_opens_a_whole_page(client, people, ann_alias, public_dns):
    login(client, people.user)
    response = checked(client, reverse("alias_deliverability", args=[ann_alias.pk]))
    html = response.content.decode()
    assert "<html" in html
    # The policy does not allow per-user gateways: the domain path is the one used now.
    used = html[html.index("data-in-use") :]
    assert "example.com&#x27;s servers" in used[: used.index("used now")]
    assert "<details open>" in html  # on its own page the reasons are shown at once


def test_a_dns_timeout_renders_an_unknown_sentence_not_an_error(
    client, people, ann_alias, public_dns
):
    public_dns({(name, rdtype): TIMEOUT for name, rdtype in PARTNER})
    login(client, people.user)
    response = checked(client, reverse("alias_deliverability", args=[ann_alias.pk]))
    assert response.status_code == 200
    assert "DNS did not answer" in response.content.decode()


def test_the_send_as_page_loads_the_hint_lazily(client, people, ann_alias, public_dns):
    login(client, people.user)
    resolver = public_dns(PARTNER)
    html = client.get(reverse("alias_list")).content.decode()
    url = reverse("alias_deliverability", args=[ann_alias.pk])
    assert f'hx-get="{url}" hx-trigger="load"' in html
    assert f'<a href="{url}">' in html  # without JavaScript
    assert resolver.queries == []  # the page itself asked DNS nothing


def test_srv_lookup_suggests_the_announced_submission_servers(client, people, public_dns):
    login(client, people.user)
    html = client.get(reverse("srv_lookup"), {"address": "ann@partner.org"}).content.decode()
    assert 'data-host="smtp.partner.org" data-port="465" data-security="tls"' in html
    assert html.index('data-port="465"') < html.index('data-port="587"')


def test_srv_lookup_stays_quiet_for_a_partial_address_and_says_so_when_dns_fails(
    client, people, public_dns
):
    login(client, people.user)
    resolver = public_dns({("_submission._tcp.partner.org", "SRV"): TIMEOUT})
    assert client.get(reverse("srv_lookup"), {"address": "ann@"}).content == b""
    assert resolver.queries == []
    html = client.get(reverse("srv_lookup"), {"address": "ann@partner.org"}).content.decode()
    assert "We could not ask DNS which server partner.org uses" in html


def test_srv_lookup_needs_a_login(client, public_dns):
    response = client.get(reverse("srv_lookup"), {"address": "ann@partner.org"})
    assert response.status_code == 302


def test_the_hint_counts_dkim_for_the_domain_path_once_a_key_is_active(client, people, public_dns):
    from domainkeys.keys import generate_key

    own = SendAsAlias.objects.create(
        account=people.user, address="ann.sales@example.com", state=SendAsAlias.State.VERIFIED
    )
    key = generate_key(people.domain)
    public_dns({("_dmarc.example.com", "TXT"): [txt("v=DMARC1; p=reject")]})
    login(client, people.user)
    url = reverse("alias_deliverability", args=[own.pk])
    html = checked(client, url, headers={"HX-Request": "true"}).content.decode()
    assert "not signed with DKIM yet" in html  # the key still waits for DNS
    assert "passes DMARC by DKIM" not in html

    key.activate()
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "not signed with DKIM yet" not in html
    assert "Sendgate signs this mail with DKIM for example.com" in html
    assert "passes DMARC" in html


def test_the_hint_is_looked_up_by_a_worker_while_the_page_polls(
    client, people, ann_alias, public_dns
):
    login(client, people.user)
    resolver = public_dns(PARTNER)
    url = reverse("alias_deliverability", args=[ann_alias.pk])
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "Checking SPF and DMARC…" in html
    assert f'hx-get="{url}" hx-trigger="every 2s"' in html
    assert resolver.queries == []  # the request asked DNS nothing

    check = DeliverabilityCheck.objects.get()
    assert (check.alias_domain, check.gateway_host) == ("partner.org", "smtp.partner.org")
    deliverability_checks.run(check.pk)
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "Through smtp.partner.org it passes SPF for partner.org." in html
    assert "hx-trigger" not in html  # done: polling stops


def test_answers_are_kept_an_hour_per_domain_and_server(client, people, ann_alias, public_dns):
    login(client, people.user)
    resolver = public_dns(PARTNER)
    url = reverse("alias_deliverability", args=[ann_alias.pk])
    checked(client, url)
    asked = len(resolver.queries)
    assert asked > 0
    # Another alias in the same domain on the same server: the same answers, no new look-up.
    other = SendAsAlias.objects.create(
        account=people.user,
        address="info@partner.org",
        smtp_server=SmtpServer.objects.create(host="smtp.partner.org", username="i"),
    )
    html = checked(client, reverse("alias_deliverability", args=[other.pk])).content.decode()
    assert "passes SPF for partner.org" in html
    assert len(resolver.queries) == asked and DeliverabilityCheck.objects.count() == 1

    DeliverabilityCheck.objects.update(finished_at=timezone.now() - timedelta(minutes=61))
    html = client.get(url).content.decode()
    assert "passes SPF for partner.org" in html  # the old answer, while a new one is looked up
    assert DeliverabilityCheck.objects.get().finished_at is None
    checked(client, url)
    assert len(resolver.queries) == 2 * asked


class SlowResolver:
    """A nameserver that never answers: each query waits out its lifetime, then times out."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, float]] = []

    def resolve(self, qname, rdtype, lifetime=None):
        self.queries.append((str(qname), lifetime))
        time.sleep(lifetime)
        raise dns_exception.Timeout


def test_all_look_ups_of_a_check_share_one_deadline(people, ann_alias, settings):
    settings.SENDGATE_DELIVERABILITY_SECONDS = 0.5
    check = deliverability_checks.requested("partner.org", "smtp.partner.org")
    resolver = SlowResolver()
    deliverability_checks.run(check.pk, resolver)
    # The first look-up used the whole deadline; the others were never sent.
    assert len(resolver.queries) == 1 and resolver.queries[0][1] <= 0.5
    facts = deliverability_checks.facts_of(DeliverabilityCheck.objects.get())
    assert facts.dmarc.status == "unknown" and facts.spf.result == "unknown"


def summary_of(html: str) -> str:
    return html[html.index("<summary>") : html.index("</summary>")]


def test_the_verdict_is_one_line_for_the_path_used_and_the_reasons_wait_behind_it(
    client, people, ann_alias, public_dns
):
    people.user.gateways_allowed = True
    people.user.save()
    login(client, people.user)
    url = reverse("alias_deliverability", args=[ann_alias.pk])
    html = checked(client, url, headers={"HX-Request": "true"}).content.decode()
    summary = summary_of(html)
    assert "Passes DMARC through smtp.partner.org" in summary
    assert "state-sent" in summary
    assert "<details>" in html  # closed in the send-as list: the sentences open on demand
    assert "publishes p=reject" not in summary


def test_not_authenticated_on_the_organisations_own_path_is_neutral_not_alarming(
    client, people, public_dns
):
    alias = SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    public_dns({("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=none")]})
    login(client, people.user)
    url = reverse("alias_deliverability", args=[alias.pk])
    summary = summary_of(checked(client, url, headers={"HX-Request": "true"}).content.decode())
    assert (
        "Not authenticated through example.com&#x27;s servers: receivers may show "
        "“on behalf of”" in summary
    )
    assert "state-" not in summary  # no orange, no red: the mail is delivered


def test_a_failing_reject_policy_is_still_shown_as_a_problem(client, people, public_dns):
    alias = SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    public_dns({("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")]})
    login(client, people.user)
    url = reverse("alias_deliverability", args=[alias.pk])
    summary = summary_of(checked(client, url, headers={"HX-Request": "true"}).content.decode())
    assert "Fails DMARC through example.com&#x27;s servers: receivers are likely to reject it" in (
        summary
    )
    assert "state-failed" in summary


def test_an_unconfirmed_alias_gets_no_deliverability_verdict(client, people, ann_alias, public_dns):
    pending = SendAsAlias.objects.create(
        account=people.user, address="ann@elsewhere.org", state=SendAsAlias.State.PENDING
    )
    login(client, people.user)
    html = client.get(reverse("alias_list")).content.decode()
    assert reverse("alias_deliverability", args=[ann_alias.pk]) in html
    assert reverse("alias_deliverability", args=[pending.pk]) not in html
