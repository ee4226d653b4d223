"""DNS lookups behind one small module; the resolver is injectable so tests feed it answers."""

from __future__ import annotations

from typing import Protocol

import dns.exception
import dns.resolver


class Resolver(Protocol):
    def resolve(self, qname: str, rdtype: str, lifetime: float | None = None): ...


def default_resolver() -> Resolver:
    return dns.resolver.Resolver()


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
