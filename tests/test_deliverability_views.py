"""The deliverability hint and the SRV pre-fill on the send-as page; DNS from a table."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gateways.models import SendAsAlias, SmtpServer
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
    response = client.get(
        reverse("alias_deliverability", args=[ann_alias.pk]), headers={"HX-Request": "true"}
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
    assert html.index("used now") > html.index("Through smtp.partner.org")  # the gateway is used
    assert "not signed with DKIM yet" in html


def test_without_htmx_the_link_opens_a_whole_page(client, people, ann_alias, public_dns):
    login(client, people.user)
    response = client.get(reverse("alias_deliverability", args=[ann_alias.pk]))
    html = response.content.decode()
    assert "<html" in html
    # The policy does not allow per-user gateways: the domain path is the one used now.
    assert html.index("used now") < html.index("Through smtp.partner.org")


def test_a_dns_timeout_renders_an_unknown_sentence_not_an_error(
    client, people, ann_alias, public_dns
):
    public_dns({(name, rdtype): TIMEOUT for name, rdtype in PARTNER})
    login(client, people.user)
    response = client.get(reverse("alias_deliverability", args=[ann_alias.pk]))
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
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "not signed with DKIM yet" in html  # the key still waits for DNS
    assert "passes DMARC by DKIM" not in html

    key.activate()
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "not signed with DKIM yet" not in html
    assert "Sendgate signs this mail with DKIM for example.com" in html
    assert "passes DMARC" in html
