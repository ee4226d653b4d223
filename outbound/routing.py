"""Which way a message leaves: one pure function, no I/O, decided again at every attempt."""

from __future__ import annotations

from dataclasses import dataclass

from directory.models import Account
from gateways.models import SendAsAlias
from outbox.models import RouteKind, Rule


@dataclass(frozen=True)
class AliasFacts:
    address: str
    verified: bool
    server_id: int | None
    server_ready: bool  # passed its connection test
    server_paused: bool = False  # refused our credentials during delivery


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    rule: Rule
    envelope_from: str
    sender_header: str | None  # value for a Sender: header, None for no header
    server_id: int | None  # SmtpServer to relay through; None for direct MX
    policy_version: int
    hold: bool = False  # do not send now: the chosen server is paused
    # The domain whose DKIM key signs this message: the From domain when the organisation owns
    # it, else the domain of the Sender: header (so d= is aligned with the header it vouches
    # for). None on a per-user gateway: the partner's server signs that mail, never Sendgate.
    dkim_domain: str | None = None


def choose_route(
    *,
    primary_address: str,
    own_domains: frozenset[str],
    from_address: str,
    alias: AliasFacts | None,
    gateways_allowed: bool,
    policy_version: int,
    domain_gateway_id: int | None,
    automatic: bool = False,
) -> Route:
    """Return the route for one delivery attempt of a message sent as ``from_address``.

    ``automatic`` marks Sendgate's own notices (delivery reports): they use the null envelope
    sender so that they can never bounce back and loop (RFC 3464, RFC 5321 4.5.5).
    """
    if alias is not None and alias.verified and alias.server_id is not None:
        if not gateways_allowed:
            rule = Rule.POLICY_DENIES
        elif not alias.server_ready:
            rule = Rule.GATEWAY_NOT_READY
        else:
            paused = alias.server_paused
            return Route(
                kind=RouteKind.USER_GATEWAY,
                rule=Rule.GATEWAY_PAUSED if paused else Rule.ALIAS_GATEWAY_ALLOWED,
                envelope_from=alias.address,
                sender_header=None,
                server_id=alias.server_id,
                policy_version=policy_version,
                hold=paused,
            )
    else:
        rule = Rule.NO_ALIAS_GATEWAY

    from_domain = from_address.rsplit("@", 1)[-1].lower()
    foreign = from_address.lower() != primary_address.lower() and from_domain not in own_domains
    sender_header = primary_address if foreign and not automatic else None
    if not foreign:
        dkim_domain: str | None = from_domain
    elif sender_header:
        dkim_domain = sender_header.rsplit("@", 1)[-1].lower()
    else:
        dkim_domain = None  # no header in the message names a domain of ours
    return Route(
        kind=RouteKind.DOMAIN_GATEWAY if domain_gateway_id else RouteKind.DIRECT_MX,
        rule=rule,
        envelope_from="" if automatic else primary_address,
        sender_header=sender_header,
        server_id=domain_gateway_id,
        policy_version=policy_version,
        dkim_domain=dkim_domain,
    )


def route_for(
    account: Account, from_address: str, alias: SendAsAlias | None, automatic: bool = False
) -> Route:
    """The route for mail ``account`` sends as ``from_address``: the facts, read off objects the
    caller has loaded (with the alias's server and the account's domain), then ``choose_route``.

    Delivery calls it at every attempt; the send-as page calls it to say which path mail takes.
    """
    facts = None
    if alias is not None:
        server = alias.smtp_server
        facts = AliasFacts(
            address=alias.address,
            verified=alias.is_verified,
            server_id=server.pk if server else None,
            server_ready=bool(server and server.last_test_ok),
            server_paused=bool(server and server.is_paused),
        )
    domain = account.domain
    return choose_route(
        primary_address=account.email,
        own_domains=account.own_domain_names(),
        from_address=from_address,
        alias=facts,
        gateways_allowed=account.gateways_allowed,
        policy_version=account.policy_version,
        domain_gateway_id=domain.outbound_gateway_id if domain else None,
        automatic=automatic,
    )
