"""Refuse to connect to addresses a user should not reach through Sendgate (SSRF guard).

Checks the *resolved* addresses, never the host text: getaddrinfo accepts ``127.1``,
``0x7f000001`` and friends, which ipaddress does not parse. Every address a name resolves to must be
allowed, and the caller connects to exactly the addresses checked here (no second lookup, so DNS
rebinding cannot swap them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges that report is_global=True yet reach something local, or that are not unicast hosts.
_ALWAYS_DENIED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/3",  # multicast and the old class E
        "::/128",
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # local-use NAT64
        "2002::/16",  # 6to4 embeds an IPv4 address
        "2001::/32",  # Teredo
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",  # deprecated site-local
        "ff00::/8",
    )
]


STANDARD_SMTP_PORTS = frozenset({25, 465, 587, 2525})

# (host, port) -> getaddrinfo-style tuples; injectable so tests can make a name resolve anywhere.
GetAddrInfo = Callable[[str, int], Awaitable[list[tuple]]]


class UnsafePort(Exception):
    """A port outside the SMTP ports that the operator has not allowed."""

    def __init__(self, port: int) -> None:
        super().__init__(
            f"port {port} is not an SMTP port (25, 465, 587, 2525) and not allowed by the operator"
        )
        self.port = port


def check_port(port: int, allowed_ports: Iterable[str]) -> None:
    """Refuse ``port`` unless it is a standard SMTP port or in the operator's list ("2587",
    "1024-65535")."""
    if port in STANDARD_SMTP_PORTS:
        return
    for spec in allowed_ports:
        low, _, high = str(spec).strip().partition("-")
        if low and int(low) <= port <= int(high or low):
            return
    raise UnsafePort(port)


class UnsafeAddress(Exception):
    """The host resolves to an address outside the public internet."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, which is not a public internet address")
        self.host = host
        self.address = address


@dataclass(frozen=True)
class Resolved:
    family: int
    address: str


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    return None


def is_allowed(ip: IPAddress, allowed: list[IPNetwork]) -> bool:
    if any(ip in net for net in allowed if net.version == ip.version):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and ip.ipv4_mapped:
            return is_allowed(embedded, allowed)
        if embedded is not None and not is_allowed(embedded, allowed):
            return False
    if any(ip in net for net in _ALWAYS_DENIED if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


async def _system_getaddrinfo(host: str, port: int) -> list[tuple]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def resolve_checked(
    host: str, port: int, allowed: list[IPNetwork], getaddrinfo: GetAddrInfo | None = None
) -> list[Resolved]:
    """Resolve ``host`` and return its addresses, or raise UnsafeAddress if any is not allowed."""
    host = host.strip().removeprefix("[").removesuffix("]")  # "[::1]" is ::1
    infos = await (getaddrinfo or _system_getaddrinfo)(host, port)
    resolved: list[Resolved] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]  # drop an IPv6 zone id
        if not is_allowed(ipaddress.ip_address(address), allowed):
            raise UnsafeAddress(host, address)
        if Resolved(family, address) not in resolved:
            resolved.append(Resolved(family, address))
    return resolved


async def connect_checked(host: str, port: int, allowed: list[IPNetwork]) -> socket.socket:
    """Open a TCP connection to the first reachable checked address of ``host``."""
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for target in await resolve_checked(host, port, allowed):
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
        # on sockets that say they are TCP. With Nagle on, the small write that ends a message
        # waits for the peer's delayed ACK: some 40 ms per message on a kept session.
        sock = socket.socket(target.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (target.address, port))
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"no address for {host}")
