"""A table-driven stand-in for the public DNS, which cannot be reached from the tests."""

from __future__ import annotations

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

TIMEOUT = "timeout"  # the nameserver does not answer
SERVFAIL = "servfail"  # no nameserver could answer


class FakeResolver:
    """Answer from ``{(name, rdtype): [record text, ...] | TIMEOUT | SERVFAIL}``.

    Records are real dnspython rdata parsed from zone-file text, so the code under test reads
    the same attributes it reads in production. A name absent from the table does not exist;
    a name present with other types gives NoAnswer for the missing type.
    """

    def __init__(self, table: dict[tuple[str, str], list[str] | str]) -> None:
        self.table = {(name.lower().rstrip("."), rdtype): v for (name, rdtype), v in table.items()}
        self.queries: list[tuple[str, str]] = []

    def resolve(self, qname, rdtype, lifetime=None):
        name = str(qname).lower().rstrip(".")
        self.queries.append((name, rdtype))
        entry = self.table.get((name, rdtype))
        if entry == TIMEOUT:
            raise dns.exception.Timeout
        if entry == SERVFAIL:
            raise dns.resolver.NoNameservers
        if entry is None:
            if any(n == name for n, _t in self.table):
                raise dns.resolver.NoAnswer
            raise dns.resolver.NXDOMAIN
        rdclass, rtype = dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
        return [dns.rdata.from_text(rdclass, rtype, text) for text in entry]


def txt(*strings: str) -> str:
    """Zone-file text of one TXT record made of ``strings`` (long records come split)."""
    return " ".join('"' + s.replace('"', '\\"') + '"' for s in strings)
