"""The SSRF guard: user-supplied SMTP hosts must resolve to public addresses only."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mailkit.netguard import (
    UnsafeAddress,
    UnsafePort,
    check_port,
    connect_checked,
    parse_networks,
    resolve_checked,
)
from mailkit.smtp import Security, Target, run_session

# Every one of these must be refused with no allow-list. Literal and obfuscated forms go through
# the real getaddrinfo (which accepts 127.1, 2130706433, 0x7f000001, 017700000001 ...).
REFUSED_LITERALS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0177.0.0.1",
    "127.000.000.001",
    "127.255.255.254",
    "0",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "[::1]",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "64:ff9b:1::1",
    "2002:7f00:1::",
    "2002:a00:1::1",
    "::127.0.0.1",
    "fec0::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "2001::1",
    "localhost",
]


def resolve(host: str, getaddrinfo=None, allowed=()):
    return asyncio.run(resolve_checked(host, 587, parse_networks(allowed), getaddrinfo))


@pytest.mark.parametrize("host", REFUSED_LITERALS)
def test_non_public_addresses_are_refused(host):
    with pytest.raises(UnsafeAddress):
        resolve(host)


def fake_dns(table: dict[str, list[str]]):
    async def getaddrinfo(host: str, port: int) -> list[tuple]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    return getaddrinfo


def test_a_name_resolving_to_a_private_address_is_refused():
    with pytest.raises(UnsafeAddress, match="smtp.evil.test resolves to 10.0.0.5"):
        resolve("smtp.evil.test", fake_dns({"smtp.evil.test": ["10.0.0.5"]}))


def test_a_name_with_one_public_and_one_private_address_is_refused():
    dns = fake_dns({"mixed.test": ["93.184.216.34", "192.168.0.10"]})
    with pytest.raises(UnsafeAddress, match="192.168.0.10"):
        resolve("mixed.test", dns)


def test_public_addresses_are_returned_in_order_for_the_connect():
    dns = fake_dns({"smtp.partner.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    assert [r.address for r in resolve("smtp.partner.test", dns)] == [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
    ]


def test_the_operator_allow_list_admits_its_networks_only():
    assert resolve("127.0.0.1", allowed=["127.0.0.0/8"])
    with pytest.raises(UnsafeAddress):
        resolve("10.0.0.1", allowed=["127.0.0.0/8"])
    # An IPv4-mapped loopback address is loopback: the IPv4 allow-list decides.
    assert resolve("::ffff:127.0.0.1", allowed=["127.0.0.0/8"])


@pytest.mark.parametrize("port", [25, 465, 587, 2525])
def test_standard_smtp_ports_need_no_permission(port):
    check_port(port, [])


def test_other_ports_need_the_operator_list():
    with pytest.raises(UnsafePort):
        check_port(22, [])
    check_port(2587, ["2587"])
    check_port(3050, ["3000-3100"])
    with pytest.raises(UnsafePort):
        check_port(3101, ["3000-3100"])


def test_delivery_refuses_an_unsafe_host_before_connecting(settings):
    settings.SENDGATE_SMTP_ALLOWED_NETWORKS = []
    outcome = asyncio.run(run_session(Target("127.1", 587, Security.STARTTLS), "a@b.test"))
    assert not outcome.ok
    assert outcome.error.startswith("Not allowed: 127.1 resolves to 127.0.0.1")
    assert outcome.transcript == []  # nothing was sent anywhere


def test_a_checked_connection_sends_small_writes_at_once():
    """The last line of a message must not wait for the server's delayed ACK (Nagle's algorithm):
    that cost some 40 ms per message on a kept session. asyncio turns Nagle off only on sockets
    that say they are TCP."""
    listener = socket.create_server(("127.0.0.1", 0))

    async def open_transport() -> int:
        sock = await connect_checked(
            "127.0.0.1", listener.getsockname()[1], parse_networks(["127.0.0.0/8"])
        )
        transport, _protocol = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, sock=sock
        )
        nodelay = transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        transport.close()
        return nodelay

    try:
        assert asyncio.run(open_transport()) != 0
    finally:
        listener.close()
