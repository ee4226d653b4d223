"""The test harness itself: no test may send traffic beyond loopback."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("address", [("192.0.2.1", 25), ("10.255.255.53", 53)])
def test_a_test_cannot_reach_an_address_off_this_machine(address):
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(OSError, match="only reach loopback"),
    ):
        sock.sendto(b"x", address)
    with socket.socket() as sock, pytest.raises(OSError, match="only reach loopback"):
        sock.connect(address)


def test_public_dns_is_offline_in_tests():
    from mailkit import dns

    assert dns.submission_servers("example.com").status == dns.Status.UNKNOWN
