"""The routing decision over every case, as a pure function."""

from __future__ import annotations

import pytest

from outbound.routing import AliasFacts, RouteKind, Rule, choose_route

PRIMARY = "ann@example.com"
OWN = frozenset({"example.com"})
PARTNER = "ann@partner.org"


def route(
    alias: AliasFacts | None,
    *,
    allowed: bool = True,
    gateway: int | None = 7,
    from_address: str = PARTNER,
):
    return choose_route(
        primary_address=PRIMARY,
        own_domains=OWN,
        from_address=from_address,
        alias=alias,
        gateways_allowed=allowed,
        policy_version=3,
        domain_gateway_id=gateway,
    )


def alias(**overrides) -> AliasFacts:
    facts = {"address": PARTNER, "verified": True, "server_id": 42, "server_ready": True}
    return AliasFacts(**(facts | overrides))


def test_alias_mail_uses_its_gateway_when_policy_allows():
    r = route(alias())
    assert (r.kind, r.rule, r.server_id) == (RouteKind.USER_GATEWAY, Rule.ALIAS_GATEWAY_ALLOWED, 42)
    assert r.envelope_from == PARTNER
    assert r.sender_header is None
    assert r.policy_version == 3


def test_alias_mail_takes_domain_gateway_with_sender_header_when_policy_denies():
    r = route(alias(), allowed=False)
    assert (r.kind, r.rule, r.server_id) == (RouteKind.DOMAIN_GATEWAY, Rule.POLICY_DENIES, 7)
    assert r.envelope_from == PRIMARY
    assert r.sender_header == PRIMARY


def test_alias_without_gateway_takes_the_domain_path():
    r = route(alias(server_id=None, server_ready=False))
    assert (r.kind, r.rule) == (RouteKind.DOMAIN_GATEWAY, Rule.NO_ALIAS_GATEWAY)
    assert r.sender_header == PRIMARY


def test_gateway_that_failed_its_test_is_not_used():
    r = route(alias(server_ready=False))
    assert (r.kind, r.rule) == (RouteKind.DOMAIN_GATEWAY, Rule.GATEWAY_NOT_READY)


def test_unverified_alias_never_uses_its_gateway():
    r = route(alias(verified=False))
    assert r.kind == RouteKind.DOMAIN_GATEWAY
    assert r.envelope_from == PRIMARY


def test_domain_without_gateway_delivers_direct_to_mx():
    r = route(alias(), allowed=False, gateway=None)
    assert (r.kind, r.server_id) == (RouteKind.DIRECT_MX, None)
    assert r.sender_header == PRIMARY


@pytest.mark.parametrize("from_address", [PRIMARY, "ANN@example.com", "sales@example.com"])
def test_mail_from_own_domain_gets_no_sender_header(from_address):
    r = route(None, from_address=from_address)
    assert r.kind == RouteKind.DOMAIN_GATEWAY
    assert r.sender_header is None
    assert r.envelope_from == PRIMARY


# --- which domain signs (DKIM) -------------------------------------------------------------------


def test_per_user_gateway_mail_is_never_signed_by_sendgate():
    assert route(alias()).dkim_domain is None


@pytest.mark.parametrize("gateway", [7, None])
def test_domain_path_signs_own_domain_mail_with_the_from_domain(gateway):
    r = route(None, gateway=gateway, from_address="ann.sales@Example.com")
    assert r.dkim_domain == "example.com"


def test_domain_path_signs_foreign_from_with_the_sender_header_domain():
    r = route(alias(), allowed=False)
    assert r.sender_header == PRIMARY
    assert r.dkim_domain == "example.com"


def test_automatic_report_from_a_foreign_domain_is_not_signed():
    r = choose_route(
        primary_address=PRIMARY,
        own_domains=OWN,
        from_address="MAILER-DAEMON@sendgate.localhost",
        alias=None,
        gateways_allowed=False,
        policy_version=1,
        domain_gateway_id=None,
        automatic=True,
    )
    assert r.sender_header is None and r.dkim_domain is None
