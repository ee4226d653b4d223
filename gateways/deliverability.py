"""Would mail sent as an alias pass SPF and DMARC for the alias's domain? An honest estimate.

Who is checked, per path:

* The domain path (the domain's outbound gateway, or direct MX from this server). The envelope
  sender is the account's primary address, ann@example.com, so receivers run SPF for
  example.com, never for partner.org: partner.org's SPF record plays no part, and neither do the
  sending IP addresses. DMARC for partner.org needs an SPF-authenticated domain *aligned* with
  the From domain (RFC 7489 3.1.2): with relaxed alignment, example.com and partner.org must
  share an organisational domain; with strict alignment (aspf=s) they must be equal. So this
  path fails DMARC by SPF, unless the two domains are one organisation (an alias at
  news.example.com sent by example.com). Siblings such as a.example.com and b.example.com may or
  may not be one organisation: telling needs the Public Suffix List, which we do not ship, so we
  say "unknown".
  DKIM: once example.com has an active key (its published record checked), Sendgate signs this
  path's mail with d=example.com, the domain of the Sender: header it adds (or of the From
  address itself when the account owns that domain). DMARC counts a DKIM pass only when d= is
  aligned with the From domain (RFC 7489 3.1.1, adkim), so for partner.org the signature vouches
  for the Sender, not for the alias: it does not rescue DMARC. For an alias in the account's own
  domain it does: then DMARC passes by DKIM alone.
* The per-user gateway. The envelope sender is the alias itself, so SPF is checked for
  partner.org and is aligned by construction: DMARC passes exactly when SPF passes. We evaluate
  partner.org's SPF record for the addresses the server's host name resolves to. That is an
  approximation: a provider may hand mail from its submission host to other relays; their
  addresses are usually in the same SPF record, but a "fail" here is worded as "probably".

SPF evaluation (RFC 7208) is bounded and refuses to guess: ip4, ip6, a, mx, include, redirect
and all with their qualifiers are evaluated; exists, ptr and macros give "unknown"; more than
10 DNS-querying terms give "unknown" (receivers call that a permerror, but some are lenient, so
we cannot say what they will do). A DNS timeout anywhere gives "unknown".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from django.utils.translation import gettext as _

from mailkit import dns

MAX_DNS_LOOKUPS = 10  # RFC 7208 4.6.4
MAX_MX_NAMES = 10  # RFC 7208 4.6.4: addresses of at most 10 MX hosts per "mx" term

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfResult(StrEnum):
    """RFC 7208 results, plus UNKNOWN for "we did not or could not evaluate it"."""

    PASS = "pass"  # noqa: S105 - a result, not a password
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    UNKNOWN = "unknown"


class Why(StrEnum):
    """Why an SPF result is UNKNOWN."""

    DNS = "dns"  # a lookup timed out or no nameserver answered
    UNSUPPORTED = "unsupported"  # exists, ptr or macros
    TOO_MANY_LOOKUPS = "too_many_lookups"
    NO_ADDRESS = "no_address"  # the sending host has no address we could find
    MIXED = "mixed"  # the host's addresses get different results


@dataclass(frozen=True)
class SpfCheck:
    result: SpfResult
    why: Why | None = None  # set when result is UNKNOWN


QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}
MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
MECHANISM = re.compile(r"^([+\-~?]?)([a-z][a-z0-9_.-]*)(.*)$", re.IGNORECASE)
# ":domain" then "/cidr4" then "//cidr6", each optional (RFC 7208 5.3, 5.4).
DOMAIN_AND_CIDR = re.compile(r"^(?::([^/]+))?(?:/(\d+))?(?://(\d+))?$")


class _Stop(Exception):  # noqa: N818 - not an error: the evaluation ends with this result
    def __init__(self, check: SpfCheck) -> None:
        self.check = check


class SpfEvaluator:
    """Evaluate SPF for one IP address; a new evaluator per check keeps the lookup count."""

    def __init__(self, resolver: dns.Resolver) -> None:
        self.resolver = resolver
        self.lookups = 0

    def check(self, ip: str, domain: str, records: dns.Lookup[str] | None = None) -> SpfCheck:
        """Return the SPF result for ``ip`` sending with a MAIL FROM in ``domain``."""
        try:
            return self._check_host(ipaddress.ip_address(ip), domain, records, top=True)
        except _Stop as stop:
            return stop.check

    def _count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_LOOKUPS:
            raise _Stop(SpfCheck(SpfResult.UNKNOWN, Why.TOO_MANY_LOOKUPS))

    def _check_host(
        self, ip: IPAddress, domain: str, records: dns.Lookup[str] | None, top: bool = False
    ) -> SpfCheck:
        if records is None:
            records = dns.spf_records(domain, self.resolver)
        if records.status == dns.Status.UNKNOWN:
            return SpfCheck(SpfResult.UNKNOWN, Why.DNS)
        if records.status == dns.Status.MISSING:
            # At the top that is "none"; behind include or redirect it is an error (RFC 7208 5.2).
            return SpfCheck(SpfResult.NONE if top else SpfResult.PERMERROR)
        if len(records.values) > 1:
            return SpfCheck(SpfResult.PERMERROR)  # RFC 7208 4.5
        return self._evaluate(ip, domain, records.values[0])

    def _evaluate(self, ip: IPAddress, domain: str, record: str) -> SpfCheck:
        terms = record.split()[1:]  # after "v=spf1"
        if any("%" in term for term in terms):
            return SpfCheck(SpfResult.UNKNOWN, Why.UNSUPPORTED)  # macros
        redirect = None
        mechanisms: list[tuple[str, str, str]] = []
        for term in terms:
            modifier = MODIFIER.match(term)
            if modifier:
                name, value = modifier.group(1).lower(), modifier.group(2)
                if name == "redirect":
                    redirect = value
                continue  # exp= and unknown modifiers do not change the result (RFC 7208 6)
            mechanism = MECHANISM.match(term)
            if not mechanism:
                return SpfCheck(SpfResult.PERMERROR)
            qualifier, name, rest = mechanism.groups()
            mechanisms.append((qualifier or "+", name.lower(), rest))

        for qualifier, name, rest in mechanisms:
            if self._matches(ip, domain, name, rest):
                return SpfCheck(QUALIFIERS[qualifier])
        if redirect is not None:  # only reached when no mechanism matched, "all" included
            self._count_lookup()
            return self._check_host(ip, redirect, None)
        return SpfCheck(SpfResult.NEUTRAL)

    def _matches(self, ip: IPAddress, domain: str, name: str, rest: str) -> bool:
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            if not rest.startswith(":"):
                raise _Stop(SpfCheck(SpfResult.PERMERROR))
            try:
                network = ipaddress.ip_network(rest[1:], strict=False)
            except ValueError:
                raise _Stop(SpfCheck(SpfResult.PERMERROR)) from None
            return network.version == ip.version and ip in network
        if name == "include":
            if not rest.startswith(":"):
                raise _Stop(SpfCheck(SpfResult.PERMERROR))
            self._count_lookup()
            included = self._check_host(ip, rest[1:], None)
            if included.result == SpfResult.PASS:
                return True
            if included.result in (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL):
                return False
            # none and permerror become permerror, unknown stays unknown (RFC 7208 5.2)
            bad = (
                included if included.result == SpfResult.UNKNOWN else SpfCheck(SpfResult.PERMERROR)
            )
            raise _Stop(bad)
        if name in ("a", "mx"):
            parts = DOMAIN_AND_CIDR.match(rest)
            if not parts:
                raise _Stop(SpfCheck(SpfResult.PERMERROR))
            target = parts.group(1) or domain
            prefix = parts.group(2) if ip.version == 4 else parts.group(3)
            self._count_lookup()
            hosts: tuple[str, ...] = (target,)
            if name == "mx":
                mx = self._found(dns.mx_names(target, self.resolver))
                if len(mx) > MAX_MX_NAMES:
                    raise _Stop(SpfCheck(SpfResult.PERMERROR))
                hosts = mx
            return any(self._host_matches(ip, host, prefix) for host in hosts)
        if name in ("exists", "ptr"):
            raise _Stop(SpfCheck(SpfResult.UNKNOWN, Why.UNSUPPORTED))
        raise _Stop(SpfCheck(SpfResult.PERMERROR))  # an unknown mechanism (RFC 7208 5)

    def _host_matches(self, ip: IPAddress, host: str, prefix: str | None) -> bool:
        rdtype = "A" if ip.version == 4 else "AAAA"
        lookup = dns.query(host, rdtype, self.resolver, dns.PAGE_LIFETIME)
        length = int(prefix) if prefix else ip.max_prefixlen
        for record in self._found(lookup):
            network = ipaddress.ip_network(f"{record.address}/{length}", strict=False)
            if ip in network:
                return True
        return False

    @staticmethod
    def _found(lookup: dns.Lookup) -> tuple:
        """The values of a lookup; a name that does not exist simply matches nothing."""
        if lookup.status == dns.Status.UNKNOWN:
            raise _Stop(SpfCheck(SpfResult.UNKNOWN, Why.DNS))
        return lookup.values


def spf_for_host(
    domain: str,
    addresses: dns.Lookup[str],
    records: dns.Lookup[str],
    resolver: dns.Resolver,
) -> SpfCheck:
    """SPF for mail from ``domain`` sent by a host with ``addresses``: one verdict for all.

    The same result for every address is that result; any disagreement means it depends on
    which address sends, so "unknown".
    """
    if addresses.status == dns.Status.UNKNOWN:
        return SpfCheck(SpfResult.UNKNOWN, Why.DNS)
    if not addresses.found:
        return SpfCheck(SpfResult.UNKNOWN, Why.NO_ADDRESS)
    checks = {SpfEvaluator(resolver).check(ip, domain, records) for ip in addresses.values}
    if len(checks) == 1:
        return checks.pop()
    unknown = [c for c in checks if c.result == SpfResult.UNKNOWN]
    return unknown[0] if unknown else SpfCheck(SpfResult.UNKNOWN, Why.MIXED)


# --- DMARC ----------------------------------------------------------------------------------


class Policy(StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True)
class Dmarc:
    status: dns.Status
    policy: Policy | None = None
    strict_spf: bool = False  # aspf=s
    strict_dkim: bool = False  # adkim=s


def parse_dmarc(records: dns.Lookup[str]) -> Dmarc:
    """The policy of the DMARC record at the alias domain itself (RFC 7489 6.3, 6.6.3).

    ``sp=`` is ignored: it applies to subdomains of the domain where the record was found, and
    we only ever read the record at the exact domain (no organisational-domain fallback).
    """
    if records.status == dns.Status.UNKNOWN:
        return Dmarc(dns.Status.UNKNOWN)
    if len(records.values) != 1:  # none, or several: then no DMARC applies at all
        return Dmarc(dns.Status.MISSING)
    tags = {}
    for part in records.values[0].split(";"):
        key, _sep, value = part.partition("=")
        tags[key.strip().lower()] = value.strip()
    try:
        policy = Policy(tags.get("p", "").lower())
    except ValueError:
        if "rua" not in tags:
            return Dmarc(dns.Status.MISSING)
        policy = Policy.NONE  # a bad or missing p= with reporting wanted means p=none
    return Dmarc(
        dns.Status.FOUND,
        policy,
        strict_spf=tags.get("aspf", "r").lower() == "s",
        strict_dkim=tags.get("adkim", "r").lower() == "s",
    )


# --- what to tell the user, per path ----------------------------------------------------------


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a result, not a password
    FAIL = "fail"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"  # SPF of the alias domain is not what receivers check


def spf_alignment(from_domain: str, spf_domain: str, strict: bool) -> Verdict:
    """Whether an SPF pass for ``spf_domain`` counts for DMARC of ``from_domain`` (RFC 7489 3.1.2).

    Without the Public Suffix List: equal domains align, a parent and its subdomain align
    (the hosted domain is a registered one), and siblings are "unknown".
    """
    a, b = from_domain.lower().rstrip("."), spf_domain.lower().rstrip(".")
    if a == b:
        return Verdict.PASS
    if strict:
        return Verdict.FAIL
    if a.endswith("." + b) or b.endswith("." + a):
        return Verdict.PASS
    common = 0
    for x, y in zip(reversed(a.split(".")), reversed(b.split(".")), strict=False):
        if x != y:
            break
        common += 1
    return Verdict.UNKNOWN if common >= 2 else Verdict.FAIL


@dataclass(frozen=True)
class PathHint:
    via: str  # "example.com's servers" or the gateway's host name
    is_gateway: bool
    spf: Verdict  # SPF for the alias domain
    dmarc: Verdict  # DMARC for the alias domain
    policy: Policy | None
    sentences: tuple[str, ...] = field(default=())
    in_use: bool = False


def _dmarc_consequence(alias: str, via: str, dmarc: Dmarc, verdict: Verdict) -> list[str]:
    """One sentence on what the alias domain's DMARC policy means for mail through ``via``."""
    names = {"alias": alias, "via": via}
    if dmarc.status == dns.Status.UNKNOWN:
        return [
            _(
                "We could not look up %(alias)s's DMARC policy (DNS did not answer), so we cannot "
                "tell how receivers treat mail sent as this alias through %(via)s."
            )
            % names
        ]
    if dmarc.status == dns.Status.MISSING:
        return [
            _(
                "%(alias)s publishes no DMARC policy: receivers decide for themselves how to treat "
                "mail sent as this alias through %(via)s."
            )
            % names
        ]
    if verdict == Verdict.PASS:
        return [
            _("%(alias)s publishes p=%(policy)s, and mail sent through %(via)s passes DMARC.")
            % (names | {"policy": dmarc.policy})
        ]
    fails = {
        Policy.REJECT: _(
            "%(alias)s publishes p=reject: mail sent as this alias through %(via)s is likely to be "
            "rejected."
        ),
        Policy.QUARANTINE: _(
            "%(alias)s publishes p=quarantine: mail sent as this alias through %(via)s is likely "
            "to land in spam."
        ),
        Policy.NONE: _(
            "%(alias)s publishes p=none: mail sent as this alias through %(via)s fails DMARC but "
            "is usually delivered."
        ),
    }
    might_fail = {
        Policy.REJECT: _(
            "%(alias)s publishes p=reject: if mail sent as this alias through %(via)s fails "
            "DMARC, it is likely to be rejected."
        ),
        Policy.QUARANTINE: _(
            "%(alias)s publishes p=quarantine: if mail sent as this alias through %(via)s fails "
            "DMARC, it is likely to land in spam."
        ),
        Policy.NONE: _(
            "%(alias)s publishes p=none: mail sent as this alias through %(via)s is usually "
            "delivered even if it fails DMARC."
        ),
    }
    table = fails if verdict == Verdict.FAIL else might_fail
    assert dmarc.policy is not None  # a record that was found has its p= (else it is not DMARC)
    return [table[dmarc.policy] % names]


def domain_path_hint(
    *,
    alias_domain: str,
    envelope_domain: str,
    org_name: str,
    dmarc: Dmarc,
    in_use: bool = False,
    dkim_domain: str | None = None,
) -> PathHint:
    """The domain path: the envelope sender is in ``envelope_domain``; ``dkim_domain`` is the
    domain Sendgate signs this mail for, when it has an active key (see the module docstring)."""
    via = _("%(org)s's servers") % {"org": org_name}
    names = {"alias": alias_domain, "via": via, "envelope": envelope_domain}
    sentences = [
        _(
            "Through %(via)s the envelope sender is in %(envelope)s, so receivers check SPF for "
            "%(envelope)s, not for %(alias)s."
        )
        % names
    ]
    if dmarc.status != dns.Status.FOUND:
        verdict = Verdict.UNKNOWN if dmarc.status == dns.Status.UNKNOWN else Verdict.FAIL
    else:
        verdict = spf_alignment(alias_domain, envelope_domain, dmarc.strict_spf)
        if verdict == Verdict.PASS:
            # Aligned, but whether it passes depends on envelope_domain's SPF, not judged here.
            verdict = Verdict.UNKNOWN
            sentences.append(
                _(
                    "%(alias)s and %(envelope)s count as one organisation for DMARC, so mail sent "
                    "through %(via)s passes DMARC when it passes SPF for %(envelope)s."
                )
                % names
            )
        elif verdict == Verdict.UNKNOWN:
            sentences.append(
                _("We cannot tell whether %(alias)s and %(envelope)s count as one organisation.")
                % names
            )
    if dkim_domain:
        dkim_names = names | {"dkim": dkim_domain}
        strict = dmarc.status == dns.Status.FOUND and dmarc.strict_dkim
        if spf_alignment(alias_domain, dkim_domain, strict) == Verdict.PASS:
            # We checked the published key ourselves: this signature verifies and is aligned.
            verdict = Verdict.PASS
            sentences.append(
                _(
                    "Sendgate signs this mail with DKIM for %(dkim)s, which is aligned with "
                    "%(alias)s: it passes DMARC by DKIM."
                )
                % dkim_names
            )
        else:
            sentences.append(
                _(
                    "Sendgate signs this mail with DKIM for %(dkim)s, the domain of the Sender: "
                    "address. That signature vouches for the sender, but it does not count for "
                    "DMARC of %(alias)s, which needs a signature of its own domain."
                )
                % dkim_names
            )
    sentences += _dmarc_consequence(alias_domain, via, dmarc, verdict)
    return PathHint(
        via=via,
        is_gateway=False,
        spf=Verdict.NOT_APPLICABLE,
        dmarc=verdict,
        policy=dmarc.policy,
        sentences=tuple(sentences),
        in_use=in_use,
    )


def _spf_sentence(alias: str, host: str, spf: SpfCheck) -> str:
    names = {"alias": alias, "host": host}
    if spf.result == SpfResult.PASS:
        return _("Through %(host)s it passes SPF for %(alias)s.") % names
    if spf.result == SpfResult.NONE:
        return _(
            "%(alias)s publishes no SPF record, so mail through %(host)s does not pass SPF."
        ) % (names)
    if spf.result == SpfResult.PERMERROR:
        return _(
            "%(alias)s's SPF record has an error, so mail through %(host)s does not pass SPF."
        ) % (names)
    if spf.result != SpfResult.UNKNOWN:  # fail, softfail, neutral
        return (
            _(
                "Through %(host)s it probably does not pass SPF for %(alias)s: the server's "
                "addresses are not listed in its SPF record."
            )
            % names
        )
    unknown = {
        Why.DNS: _(
            "We cannot tell whether mail through %(host)s passes SPF for %(alias)s: DNS did not "
            "answer."
        ),
        Why.UNSUPPORTED: _(
            "We cannot tell whether mail through %(host)s passes SPF for %(alias)s: its SPF record "
            "uses features we do not evaluate (exists, ptr or macros)."
        ),
        Why.TOO_MANY_LOOKUPS: _(
            "We cannot tell whether mail through %(host)s passes SPF for %(alias)s: its SPF record "
            "needs more than 10 DNS lookups, which receivers may treat as an error."
        ),
        Why.NO_ADDRESS: _(
            "We cannot tell whether mail through %(host)s passes SPF for %(alias)s: we could not "
            "find the server's address."
        ),
        Why.MIXED: _(
            "We cannot tell whether mail through %(host)s passes SPF for %(alias)s: only some of "
            "the server's addresses are listed."
        ),
    }
    return unknown[spf.why or Why.DNS] % names


def gateway_path_hint(
    *, alias_domain: str, host: str, spf: SpfCheck, dmarc: Dmarc, in_use: bool = False
) -> PathHint:
    """The per-user gateway: the envelope sender is the alias, so SPF is aligned by construction."""
    if spf.result == SpfResult.PASS:
        verdict = Verdict.PASS
    elif spf.result == SpfResult.UNKNOWN:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.FAIL
    sentences = [_spf_sentence(alias_domain, host, spf)]
    sentences += _dmarc_consequence(alias_domain, host, dmarc, verdict)
    return PathHint(
        via=host,
        is_gateway=True,
        spf=verdict,
        # Aligned by construction: with no DMARC record, a pass still authenticates the alias.
        dmarc=Verdict.UNKNOWN if dmarc.status == dns.Status.UNKNOWN else verdict,
        policy=dmarc.policy,
        sentences=tuple(sentences),
        in_use=in_use,
    )


@dataclass(frozen=True)
class Facts:
    """What DNS said about an alias domain (and the gateway's host): all the hints need."""

    dmarc: Dmarc
    spf: SpfCheck | None  # for the gateway's addresses; None without a gateway

    def to_json(self) -> dict:
        spf = None if self.spf is None else {"result": self.spf.result, "why": self.spf.why}
        return {"dmarc": asdict(self.dmarc), "spf": spf}

    @classmethod
    def from_json(cls, data: dict) -> Facts:
        d = data["dmarc"]
        dmarc = Dmarc(
            dns.Status(d["status"]), Policy(d["policy"]) if d["policy"] else None, d["strict_spf"]
        )
        s = data["spf"]
        spf = (
            None
            if s is None
            else SpfCheck(SpfResult(s["result"]), Why(s["why"]) if s["why"] else None)
        )
        return cls(dmarc, spf)


def look_up(alias_domain: str, gateway_host: str | None, resolver: dns.Resolver) -> Facts:
    """Ask DNS everything the hints for ``alias_domain`` (and ``gateway_host``) need."""
    dmarc = parse_dmarc(dns.dmarc_records(alias_domain, resolver))
    spf = None
    if gateway_host:
        spf = spf_for_host(
            alias_domain,
            dns.host_addresses(gateway_host, resolver),
            dns.spf_records(alias_domain, resolver),
            resolver,
        )
    return Facts(dmarc, spf)


def judge(
    facts: Facts,
    *,
    alias_domain: str,
    envelope_domain: str,
    org_name: str,
    gateway_host: str | None,
    using_gateway: bool,
    dkim_domain: str | None = None,
) -> list[PathHint]:
    """Judge each path mail sent as the alias can take, from what DNS said (no I/O).

    ``dkim_domain``: the domain whose active key signs the domain path's mail, if any.
    """
    hints = [
        domain_path_hint(
            alias_domain=alias_domain,
            envelope_domain=envelope_domain,
            org_name=org_name,
            dmarc=facts.dmarc,
            in_use=not using_gateway,
            dkim_domain=dkim_domain,
        )
    ]
    if gateway_host and facts.spf is not None:
        hints.append(
            gateway_path_hint(
                alias_domain=alias_domain,
                host=gateway_host,
                spf=facts.spf,
                dmarc=facts.dmarc,
                in_use=using_gateway,
            )
        )
    return hints


def assess(
    *,
    alias_domain: str,
    envelope_domain: str,
    org_name: str,
    gateway_host: str | None,
    using_gateway: bool,
    resolver: dns.Resolver | None = None,
    dkim_domain: str | None = None,
) -> list[PathHint]:
    """Look up the alias domain's records and judge each path its mail can take.

    ``dkim_domain``: the domain whose active key signs the domain path's mail, if any.
    """
    facts = look_up(alias_domain, gateway_host, resolver or dns.default_resolver())
    return judge(
        facts,
        alias_domain=alias_domain,
        envelope_domain=envelope_domain,
        org_name=org_name,
        gateway_host=gateway_host,
        using_gateway=using_gateway,
        dkim_domain=dkim_domain,
    )
