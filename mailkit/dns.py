"""DNS lookups behind one small module; the resolver is injectable so tests feed it answers."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import dns.exception
import dns.resolver


class Resolver(Protocol):
    # lifetime by keyword: dnspython's third positional parameter is rdclass.
    def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = None): ...


def default_resolver() -> Resolver:
    return dns.resolver.Resolver()


class DeadlineResolver:
    """Every lookup through it shares one deadline: each gets at most what is left, and once
    it is used up the rest time out at once (and come back as "unknown", not as a wait)."""

    def __init__(self, resolver: Resolver, seconds: float) -> None:
        self.resolver = resolver
        self.ends = time.monotonic() + seconds

    def resolve(self, qname: str, rdtype: str, lifetime: float | None = None):
        left = self.ends - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        return self.resolver.resolve(qname, rdtype, lifetime=min(lifetime or left, left))


def mx_hosts(domain: str, resolver: Resolver | None = None, lifetime: float = 10.0) -> list[str]:
    """Mail exchangers of ``domain`` by preference; the domain itself when it has no MX (RFC 5321).

    Raises LookupError when the domain does not exist or refuses mail (null MX, RFC 7505), and
    TimeoutError when DNS does not answer (worth retrying).
    """
    resolver = resolver or default_resolver()
    try:
        answer = resolver.resolve(domain, "MX", lifetime=lifetime)
    except dns.resolver.NXDOMAIN as exc:
        raise LookupError(f"{domain} does not exist") from exc
    except dns.resolver.NoAnswer:
        return [domain]
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise TimeoutError(f"DNS lookup of {domain} failed") from exc
    records = sorted(answer, key=lambda r: r.preference)
    hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
    if hosts in ([""], ["."]):
        raise LookupError(f"{domain} accepts no mail (null MX)")
    return hosts


# --- lookups for pages: failures come back as results, never as exceptions --------------------

# A page waits for these; a slow nameserver should cost seconds, not the default 5 s per try.
PAGE_LIFETIME = 3.0

T = TypeVar("T")


class Status(StrEnum):
    FOUND = "found"
    MISSING = "missing"  # the name or the record does not exist: DNS said "no"
    UNKNOWN = "unknown"  # timeout, no nameserver answered: we cannot tell


@dataclass(frozen=True)
class Lookup(Generic[T]):
    status: Status
    values: tuple[T, ...] = ()

    @property
    def found(self) -> bool:
        return self.status == Status.FOUND


def query(
    name: str, rdtype: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[Any]:
    """The records of one type at ``name``, as a Lookup."""
    resolver = resolver or default_resolver()
    try:
        answer = resolver.resolve(name, rdtype, lifetime=lifetime)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Lookup(Status.MISSING)
    except (dns.exception.Timeout, dns.resolver.NoNameservers):
        return Lookup(Status.UNKNOWN)
    except dns.exception.DNSException:  # e.g. a label too long: the name cannot exist
        return Lookup(Status.MISSING)
    records = tuple(answer)
    return Lookup(Status.FOUND, records) if records else Lookup(Status.MISSING)


def txt_records(
    name: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[str]:
    """TXT records at ``name``, each one's character-strings joined (RFC 7208 3.3)."""
    lookup = query(name, "TXT", resolver, lifetime)
    if not lookup.found:
        return lookup
    texts = tuple(b"".join(r.strings).decode("utf-8", errors="replace") for r in lookup.values)
    return Lookup(Status.FOUND, texts)


def _tagged(lookup: Lookup[str], tag: str) -> Lookup[str]:
    """Keep the records that start with the version tag ``tag`` (e.g. ``v=spf1``)."""
    if not lookup.found:
        return lookup
    records = tuple(
        t
        for t in lookup.values
        if t.lower() == tag or t.lower().startswith(tag + " ") or t.lower().startswith(tag + ";")
    )
    return Lookup(Status.FOUND, records) if records else Lookup(Status.MISSING)


def spf_records(
    domain: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[str]:
    """The ``v=spf1`` TXT records of ``domain``; more than one is an error the caller judges."""
    return _tagged(txt_records(domain, resolver, lifetime), "v=spf1")


def dmarc_records(
    domain: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[str]:
    """The ``v=DMARC1`` TXT records at ``_dmarc.<domain>``.

    Only the exact domain is asked. RFC 7489 6.6.3 would fall back to the organisational domain,
    which needs the Public Suffix List; we do not ship it, so a policy published only at the
    parent domain shows as "no DMARC record" here.
    """
    return _tagged(txt_records(f"_dmarc.{domain}", resolver, lifetime), "v=dmarc1")


def host_addresses(
    host: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[str]:
    """IPv4 and IPv6 addresses of ``host``; an IP literal is its own answer."""
    try:
        return Lookup(Status.FOUND, (str(ipaddress.ip_address(host)),))
    except ValueError:
        pass
    found: list[str] = []
    statuses = []
    for rdtype in ("A", "AAAA"):
        lookup = query(host, rdtype, resolver, lifetime)
        statuses.append(lookup.status)
        found.extend(r.address for r in lookup.values)
    if found:
        return Lookup(Status.FOUND, tuple(found))
    return Lookup(Status.UNKNOWN if Status.UNKNOWN in statuses else Status.MISSING)


def mx_names(
    domain: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[str]:
    """MX host names of ``domain`` by preference, without the implicit MX (SPF's ``mx`` wants
    exactly the published records, RFC 7208 5.4)."""
    lookup = query(domain, "MX", resolver, lifetime)
    if not lookup.found:
        return lookup
    records = sorted(lookup.values, key=lambda r: r.preference)
    names = tuple(r.exchange.to_text(omit_final_dot=True) for r in records)
    names = tuple(n for n in names if n not in ("", "."))  # null MX (RFC 7505)
    return Lookup(Status.FOUND, names) if names else Lookup(Status.MISSING)


# --- RFC 6186: where the users of a domain submit mail ------------------------------------------


@dataclass(frozen=True)
class SubmissionServer:
    host: str
    port: int
    security: str  # the SmtpServer.Security value: "tls" (implicit) or "starttls"


# Service label -> security. RFC 8314 added _submissions (implicit TLS) next to RFC 6186's
# _submission (STARTTLS on 587).
SUBMISSION_SERVICES = (("_submissions._tcp", "tls"), ("_submission._tcp", "starttls"))


def submission_servers(
    domain: str, resolver: Resolver | None = None, lifetime: float = PAGE_LIFETIME
) -> Lookup[SubmissionServer]:
    """The submission servers ``domain`` announces in SRV records, best first.

    Records of both services are ordered together by priority (RFC 6186 3.4), then by weight,
    highest first: for a suggestion we want the likeliest server, not a random one. On a tie,
    implicit TLS comes first (RFC 8314 3.3). A target of "." means "not offered" (RFC 2782).
    """
    ranked: list[tuple[int, int, int, SubmissionServer]] = []
    statuses = []
    for rank, (service, security) in enumerate(SUBMISSION_SERVICES):
        lookup = query(f"{service}.{domain}", "SRV", resolver, lifetime)
        statuses.append(lookup.status)
        for record in lookup.values:
            host = record.target.to_text(omit_final_dot=True)
            if host in ("", "."):
                continue
            server = SubmissionServer(host=host, port=record.port, security=security)
            ranked.append((record.priority, -record.weight, rank, server))
    if ranked:
        servers = tuple(dict.fromkeys(s for *_, s in sorted(ranked, key=lambda r: r[:3])))
        return Lookup(Status.FOUND, servers)
    return Lookup(Status.UNKNOWN if Status.UNKNOWN in statuses else Status.MISSING)
