"""MTA-STS (RFC 8461): a recipient domain's TXT record, its policy file, and MX matching.

The policy is fetched over HTTPS from ``mta-sts.<domain>``: through the SSRF guard (the name is
resolved once, every address checked, the connection made to a checked address), with the
certificate verified against the policy host's name, no redirects, and limits on size and time.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass, field
from enum import StrEnum

import urllib3

from . import dns
from .netguard import GetAddrInfo, IPNetwork, UnsafeAddress, resolve_checked

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3 suggests 64 KB at most
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: at most one year
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


class Mode(StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, host: str) -> bool:
        """Whether MX ``host`` is named in the policy (RFC 8461 4.1): exactly, or by a wildcard
        that stands for one leftmost label (``*.example.net`` matches ``mx1.example.net`` only)."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                label, _dot, rest = host.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


class PolicyError(Exception):
    """No usable policy: the fetch failed or the file is not a valid policy. Says why."""


@dataclass(frozen=True)
class Announcement:
    """What ``_mta-sts.<domain>`` says: FOUND with an id, MISSING, or UNKNOWN (DNS failed)."""

    status: dns.Status
    policy_id: str = ""


def announcement(
    domain: str, resolver: dns.Resolver | None = None, lifetime: float = 10.0
) -> Announcement:
    """The policy id from the domain's ``v=STSv1`` TXT record (RFC 8461 3.1)."""
    lookup = dns.txt_records(f"_mta-sts.{domain}", resolver, lifetime)
    if not lookup.found:
        return Announcement(lookup.status)
    records = [t for t in lookup.values if re.match(r"^v=STSv1\s*(;|$)", t)]
    if len(records) != 1:  # none, or several: "as if no policy" (RFC 8461 3.1)
        return Announcement(dns.Status.MISSING)
    tags = {}
    for part in records[0].split(";"):
        name, _sep, value = part.partition("=")
        tags[name.strip()] = value.strip()
    policy_id = tags.get("id", "")
    if not _ID.match(policy_id):
        return Announcement(dns.Status.MISSING)
    return Announcement(dns.Status.FOUND, policy_id)


def parse_policy(text: str) -> Policy:
    """Parse a policy file (RFC 8461 3.2); raise PolicyError with the reason if it is not one."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"policy line without a colon: {line[:80]!r}")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("policy version is not STSv1")
    try:
        mode = Mode(fields.get("mode", [""])[0])
    except ValueError:
        raise PolicyError("policy mode is not enforce, testing or none") from None
    try:
        max_age = int(fields.get("max_age", [""])[0])
    except ValueError:
        raise PolicyError("policy max_age is not a number") from None
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise PolicyError("policy max_age is out of range")
    mx = tuple(fields.get("mx", []))
    if mode is not Mode.NONE and not mx:
        raise PolicyError("policy names no mx")
    return Policy(mode=mode, mx=mx, max_age=max_age)


@dataclass
class PolicyFetcher:
    """Fetch policy files over HTTPS. ``port`` and ``getaddrinfo`` are injectable so that tests
    can serve a policy on loopback; production uses 443 and the system resolver."""

    allowed_networks: list[IPNetwork] = field(default_factory=list)
    extra_ca_file: str = ""  # trusted besides the system's CAs, as for SMTP
    port: int = 443
    getaddrinfo: GetAddrInfo | None = None
    timeout: float = 10.0
    max_bytes: int = MAX_POLICY_BYTES

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()  # verifies the chain and the host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.extra_ca_file:
            context.load_verify_locations(cafile=self.extra_ca_file)
        return context

    def fetch(self, domain: str) -> Policy:
        """The policy of ``domain``, or PolicyError saying why there is none to use."""
        host = f"mta-sts.{domain}"
        try:
            addresses = asyncio.run(
                resolve_checked(host, self.port, self.allowed_networks, self.getaddrinfo)
            )
        except UnsafeAddress as exc:
            raise PolicyError(f"refused: {exc}") from exc
        except (OSError, ValueError) as exc:  # ValueError: e.g. a name IDNA cannot encode
            raise PolicyError(f"{host} could not be resolved: {exc}") from exc
        last_error = PolicyError(f"{host} has no address")
        for address in addresses:
            try:
                text = self._get(host, address.address)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                last_error = PolicyError(f"fetching https://{host}{POLICY_PATH} failed: {exc}")
                continue
            return parse_policy(text)
        raise last_error

    def _get(self, host: str, address: str) -> str:
        """GET the policy from ``address``, verifying the certificate for ``host``."""
        deadline = time.monotonic() + self.timeout
        pool = urllib3.HTTPSConnectionPool(
            address,
            self.port,
            # SNI, and the name OpenSSL checks the certificate against (check_hostname is on).
            server_hostname=host,
            ssl_context=self._context(),
            cert_reqs="CERT_REQUIRED",
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            retries=False,
            maxsize=1,
        )
        host_header = host if self.port == 443 else f"{host}:{self.port}"
        try:
            response = pool.urlopen(
                "GET",
                POLICY_PATH,
                headers={"Host": host_header, "User-Agent": "Sendgate MTA-STS"},
                redirect=False,  # RFC 8461 3.3: redirects are not followed
                preload_content=False,
                assert_same_host=False,
            )
            try:
                if response.status != 200:
                    raise PolicyError(
                        f"https://{host}{POLICY_PATH} answered HTTP {response.status}"
                    )
                media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                if media_type.lower() != "text/plain":
                    raise PolicyError(
                        f"policy is served as {media_type or 'no type'}, not text/plain"
                    )
                body = b""
                while chunk := response.read(4096):
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise PolicyError(f"policy is larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise PolicyError(f"policy fetch took longer than {self.timeout:g} s")
            finally:
                response.release_conn()
        finally:
            pool.close()
        return body.decode("utf-8", errors="replace")
