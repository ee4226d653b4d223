"""MTA-STS for direct delivery: a real HTTPS policy server and aiosmtpd MX peers on loopback.

The policy host's name is mapped to 127.0.0.1 by the fetcher's injected getaddrinfo (the public
DNS is a table here); TLS is real, with certificates from the test CA.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from mailkit import dns
from mailkit.mta_sts import (
    Announcement,
    Mode,
    Policy,
    PolicyError,
    PolicyFetcher,
    announcement,
    parse_policy,
)
from mailkit.netguard import parse_networks
from outbound import delivery
from outbound.intake import accept_message
from outbound.models import MtaStsPolicy
from outbound.mta_sts import policy_for
from outbox.models import Message

from .fake_dns import TIMEOUT, FakeResolver, txt

RCPT = "carol@example.net"
ENFORCE_LOCALHOST = "version: STSv1\r\nmode: enforce\r\nmx: localhost\r\nmax_age: 86400\r\n"


@dataclass
class PolicyServer:
    port: int
    body: str = ENFORCE_LOCALHOST
    status: int = 200
    content_type: str = "text/plain"
    headers: dict = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # the Host header of each request


@pytest.fixture
def policy_server(pki) -> Iterator[PolicyServer]:
    """https://mta-sts.example.net/.well-known/mta-sts.txt on a loopback port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("mta-sts.example.net").configure_cert(context)
    state = PolicyServer(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's hook
            state.requests.append(self.headers.get("Host", ""))
            body = state.body.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.path == "/.well-known/mta-sts.txt":
                self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def mapped_to(address: str):
    """A getaddrinfo for the fetcher that resolves every name to ``address``."""
    asked: list[str] = []

    async def getaddrinfo(host: str, port: int) -> list[tuple]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    getaddrinfo.asked = asked
    return getaddrinfo


@pytest.fixture
def fetcher(policy_server, pki) -> PolicyFetcher:
    return PolicyFetcher(
        allowed_networks=parse_networks(["127.0.0.0/8"]),
        extra_ca_file=pki.ca_file,
        port=policy_server.port,
        getaddrinfo=mapped_to("127.0.0.1"),
        timeout=5,
    )


class Dns:
    def __init__(self) -> None:
        self.table: dict = {
            ("example.net", "MX"): ["10 localhost."],
            ("_mta-sts.example.net", "TXT"): [txt("v=STSv1; id=20261130a")],
        }

    def resolver(self) -> FakeResolver:
        return FakeResolver(dict(self.table))


@pytest.fixture
def public_dns() -> Dns:
    return Dns()


@pytest.fixture
def direct(people, trust_test_ca, settings):
    """Send from ann@example.com straight to example.net's MX (example.com has no gateway)."""

    def use(peer):
        settings.SENDGATE_DIRECT_MX_PORT = peer.port
        return peer

    return use


def send(people, public_dns: Dns, fetcher: PolicyFetcher, message: Message | None = None):
    if message is None:
        message = accept_message(people.user, people.user.email, [RCPT], "Hello", "Body")
    else:
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver(message.pk, resolver=public_dns.resolver(), policy_fetcher=fetcher)
    message.refresh_from_db()
    return message


# --- enforce -------------------------------------------------------------------------------------


def test_enforce_with_a_valid_certificate_delivers_and_says_so(
    people, public_dns, fetcher, policy_server, mx_peer, direct
):
    mx = direct(mx_peer())
    message = send(people, public_dns, fetcher)

    assert message.state == Message.State.SENT
    [got] = mx.messages
    assert got.tls
    attempt = message.attempts.get()
    assert attempt.tls_policy == "MTA-STS enforce: certificate valid for localhost"
    assert policy_server.requests == [f"mta-sts.example.net:{policy_server.port}"]
    assert fetcher.getaddrinfo.asked == ["mta-sts.example.net"]


def test_enforce_defers_when_no_mx_host_is_named_in_the_policy(
    people, public_dns, fetcher, policy_server, mx_peer, direct
):
    policy_server.body = ENFORCE_LOCALHOST.replace("localhost", "mx1.example.net")
    mx = direct(mx_peer())
    message = send(people, public_dns, fetcher)

    assert mx.messages == []
    assert message.state == Message.State.DEFERRED
    assert "none of the mail servers of example.net (localhost) is named" in message.last_reply
    assert "mx1.example.net" in message.attempts.get().tls_policy


def test_enforce_defers_on_a_certificate_that_does_not_verify(
    people, public_dns, fetcher, mx_peer, direct, untrusted_pki
):
    mx = direct(mx_peer(tls=untrusted_pki.server_context))
    message = send(people, public_dns, fetcher)

    assert mx.messages == [] and message.state == Message.State.DEFERRED
    assert "certificate" in message.last_reply
    assert message.attempts.get().tls_policy == (
        "MTA-STS enforce: no verified TLS with localhost, nothing sent"
    )


def test_enforce_never_sends_in_clear_to_an_mx_without_starttls(
    people, public_dns, fetcher, mx_peer, direct
):
    plain = direct(mx_peer(tls=False))
    public_dns.table.pop(("_mta-sts.example.net", "TXT"))
    baseline = send(people, public_dns, fetcher)  # no policy: opportunistic, plaintext allowed
    assert baseline.state == Message.State.SENT and len(plain.messages) == 1

    public_dns.table[("_mta-sts.example.net", "TXT")] = [txt("v=STSv1; id=1")]
    message = send(people, public_dns, fetcher)
    assert len(plain.messages) == 1  # nothing more arrived
    assert message.state == Message.State.DEFERRED and "STARTTLS" in message.last_reply


def test_a_certificate_for_another_name_does_not_satisfy_enforce(
    people, public_dns, fetcher, mx_peer, direct, pki
):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("mx.someone-else.test").configure_cert(context)  # trusted CA, wrong name
    mx = direct(mx_peer(tls=context))
    message = send(people, public_dns, fetcher)
    assert mx.messages == [] and message.state == Message.State.DEFERRED


# --- testing --------------------------------------------------------------------------------------


def test_testing_mode_delivers_despite_a_bad_certificate_and_logs_it(
    people, public_dns, fetcher, policy_server, mx_peer, direct, untrusted_pki, caplog
):
    policy_server.body = ENFORCE_LOCALHOST.replace("enforce", "testing")
    mx = direct(mx_peer(tls=untrusted_pki.server_context))
    with caplog.at_level(logging.WARNING, logger="outbound.delivery"):
        message = send(people, public_dns, fetcher)

    assert message.state == Message.State.SENT and len(mx.messages) == 1
    note = message.attempts.get().tls_policy
    assert note.startswith("MTA-STS testing: verified TLS with localhost failed")
    assert "sent as without a policy" in note
    assert any("MTA-STS testing: localhost" in r.getMessage() for r in caplog.records)


def test_testing_mode_with_an_unlisted_mx_delivers_and_logs_it(
    people, public_dns, fetcher, policy_server, mx_peer, direct, caplog
):
    policy_server.body = "version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 600\n"
    mx = direct(mx_peer())
    with caplog.at_level(logging.WARNING, logger="outbound.delivery"):
        message = send(people, public_dns, fetcher)
    assert message.state == Message.State.SENT and len(mx.messages) == 1
    assert "is not named in the policy" in message.attempts.get().tls_policy
    assert any("not named in the policy" in r.getMessage() for r in caplog.records)


def test_mode_none_delivers_as_without_a_policy(
    people, public_dns, fetcher, policy_server, mx_peer, direct, untrusted_pki
):
    policy_server.body = "version: STSv1\nmode: none\nmax_age: 600\n"
    mx = direct(mx_peer(tls=untrusted_pki.server_context))
    message = send(people, public_dns, fetcher)
    assert message.state == Message.State.SENT and len(mx.messages) == 1
    assert message.attempts.get().tls_policy == ""


# --- the cache ------------------------------------------------------------------------------------


def test_the_policy_is_cached_for_max_age_and_refetched_when_the_id_changes(
    db, public_dns, fetcher, policy_server
):
    resolver = public_dns.resolver()
    assert policy_for("example.net", resolver, fetcher).mode is Mode.ENFORCE
    assert policy_for("example.net", resolver, fetcher).mode is Mode.ENFORCE
    assert len(policy_server.requests) == 1  # the second came from the cache
    cached = MtaStsPolicy.objects.get(domain="example.net")
    assert cached.expires_at - cached.fetched_at == timedelta(seconds=86400)

    policy_server.body = ENFORCE_LOCALHOST.replace("enforce", "testing")
    public_dns.table[("_mta-sts.example.net", "TXT")] = [txt("v=STSv1; id=20261201")]
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.TESTING
    assert len(policy_server.requests) == 2


def test_an_expired_policy_is_fetched_again(db, public_dns, fetcher, policy_server):
    policy_for("example.net", public_dns.resolver(), fetcher)
    MtaStsPolicy.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    policy_for("example.net", public_dns.resolver(), fetcher)
    assert len(policy_server.requests) == 2


def test_a_dns_failure_or_a_failed_fetch_keeps_the_cached_policy(
    db, public_dns, fetcher, policy_server
):
    policy_for("example.net", public_dns.resolver(), fetcher)
    public_dns.table[("_mta-sts.example.net", "TXT")] = TIMEOUT
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.ENFORCE

    public_dns.table[("_mta-sts.example.net", "TXT")] = [txt("v=STSv1; id=new")]
    policy_server.status = 500
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.ENFORCE
    assert MtaStsPolicy.objects.get().policy_id == "20261130a"


def test_no_policy_and_a_failed_fetch_means_delivery_as_without_mta_sts(
    db, public_dns, fetcher, policy_server
):
    policy_server.status = 404
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.NONE
    # The failure is remembered for five minutes: a dead policy host costs one time-out.
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.NONE
    assert len(policy_server.requests) == 1
    remembered = MtaStsPolicy.objects.get()
    assert remembered.expires_at - remembered.fetched_at == timedelta(minutes=5)

    policy_server.status = 200  # the domain fixes its policy host
    MtaStsPolicy.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.ENFORCE


# --- the fetch ------------------------------------------------------------------------------------


def test_a_policy_host_on_loopback_is_refused_without_the_operators_allowance(
    db, public_dns, fetcher, policy_server
):
    fetcher.allowed_networks = []  # production default: public addresses only
    with pytest.raises(PolicyError, match="refused: mta-sts.example.net resolves to 127.0.0.1"):
        fetcher.fetch("example.net")
    assert policy_for("example.net", public_dns.resolver(), fetcher).mode is Mode.NONE
    assert policy_server.requests == []


def test_a_policy_host_on_a_private_address_is_refused(db, fetcher):
    fetcher.getaddrinfo = mapped_to("10.1.2.3")
    with pytest.raises(PolicyError, match="10.1.2.3, which is not a public internet address"):
        fetcher.fetch("example.net")


def test_an_untrusted_policy_certificate_is_refused(fetcher, policy_server, untrusted_pki):
    fetcher.extra_ca_file = untrusted_pki.ca_file  # the server's CA is not trusted now
    with pytest.raises(PolicyError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetcher.fetch("example.net")


def test_a_policy_for_another_name_is_refused(fetcher, policy_server):
    # The server's certificate is for mta-sts.example.net, not mta-sts.example.org.
    with pytest.raises(PolicyError, match="mta-sts.example.org"):
        fetcher.fetch("example.org")


@pytest.mark.parametrize(
    ("status", "content_type", "body", "reason"),
    [
        (301, "text/plain", "", "answered HTTP 301"),  # redirects are not followed
        (404, "text/plain", "", "answered HTTP 404"),
        (200, "text/html", ENFORCE_LOCALHOST, "served as text/html"),
        (200, "text/plain", "x" * 70_000, "larger than 65536 bytes"),
        (200, "text/plain", "version: STSv1\nmode: enforce\nmax_age: 60\n", "names no mx"),
    ],
)
def test_bad_policy_answers_are_refused_with_the_reason(
    fetcher, policy_server, status, content_type, body, reason
):
    policy_server.status, policy_server.content_type, policy_server.body = (
        status,
        content_type,
        body,
    )
    if status == 301:
        policy_server.headers = {"Location": "https://evil.test/"}
    with pytest.raises(PolicyError, match=reason):
        fetcher.fetch("example.net")


# --- parsing and matching -------------------------------------------------------------------------


def test_policy_parsing():
    policy = parse_policy(
        "version: STSv1\nmode: enforce\nmx: mail.example.net\nmx: *.example.net\nmax_age: 604800\n"
    )
    assert policy == Policy(Mode.ENFORCE, ("mail.example.net", "*.example.net"), 604800)
    for bad, reason in [
        ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1", "version"),
        ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1", "mode"),
        ("version: STSv1\nmode: enforce\nmx: a\nmax_age: forever", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999", "out of range"),
        ("<html>", "colon"),
    ]:
        with pytest.raises(PolicyError, match=reason):
            parse_policy(bad)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("mail.example.net", True),
        ("MAIL.example.net.", True),
        ("mx1.example.net", True),  # *.example.net
        ("a.b.example.net", False),  # a wildcard stands for one label only
        ("example.net", False),
        ("mail.example.net.evil.test", False),
    ],
)
def test_mx_matching(host, expected):
    policy = Policy(Mode.ENFORCE, ("mail.example.net", "*.example.net"), 60)
    assert policy.matches(host) is expected


@pytest.mark.parametrize(
    ("records", "status", "policy_id"),
    [
        ([txt("v=STSv1; id=20261130")], dns.Status.FOUND, "20261130"),
        ([txt("v=STSv1;id=abc;")], dns.Status.FOUND, "abc"),
        ([txt("v=STSv1; id=a"), txt("v=STSv1; id=b")], dns.Status.MISSING, ""),  # ambiguous
        ([txt("v=STSv1; id=not-alnum")], dns.Status.MISSING, ""),
        ([txt("v=spf1 -all")], dns.Status.MISSING, ""),
        (TIMEOUT, dns.Status.UNKNOWN, ""),
    ],
)
def test_the_txt_announcement(records, status, policy_id):
    resolver = FakeResolver({("_mta-sts.example.net", "TXT"): records})
    assert announcement("example.net", resolver) == Announcement(status, policy_id)


def test_the_sender_sees_which_policy_applied_on_the_message_page(
    client, people, public_dns, fetcher, mx_peer, direct
):
    from django.urls import reverse

    from .conftest import PASSWORD

    direct(mx_peer())
    message = send(people, public_dns, fetcher)
    assert client.login(username=people.user.email, password=PASSWORD)
    page = client.get(reverse("sent_detail", args=[message.pk])).content.decode()
    assert "MTA-STS enforce: certificate valid for localhost" in page


def test_a_recipient_domain_idna_cannot_encode_gives_no_policy_not_a_crash(db, fetcher):
    with pytest.raises(PolicyError, match="could not be resolved"):
        PolicyFetcher(getaddrinfo=None).fetch("a" * 70 + ".example.net")


def test_testing_mode_keeps_the_senders_own_tls_requirement(
    people, public_dns, fetcher, policy_server, mx_peer, direct, untrusted_pki
):
    people.domain.require_tls_direct = True
    people.domain.save()
    policy_server.body = ENFORCE_LOCALHOST.replace("enforce", "testing")
    mx = direct(mx_peer(tls=untrusted_pki.server_context))
    message = send(people, public_dns, fetcher)
    assert mx.messages == [] and message.state == Message.State.DEFERRED
    assert message.attempts.get().tls_policy == (
        "MTA-STS testing: no verified TLS with localhost, nothing sent"
    )


def test_an_unreachable_mx_is_not_reported_as_a_valid_certificate(
    people, public_dns, fetcher, direct, settings
):
    from .conftest import free_port

    settings.SENDGATE_DIRECT_MX_PORT = free_port()  # nobody listens there
    message = send(people, public_dns, fetcher)
    assert message.state == Message.State.DEFERRED
    assert message.attempts.get().tls_policy == "MTA-STS enforce: localhost could not be reached"


def test_the_operator_can_switch_mta_sts_off(db, public_dns, fetcher, policy_server, settings):
    settings.SENDGATE_MTA_STS = False
    resolver = public_dns.resolver()
    assert policy_for("example.net", resolver, fetcher) is None
    assert resolver.queries == [] and policy_server.requests == []
