"""DNS helpers: answers from a table; failures come back as results, not exceptions."""

from __future__ import annotations

import pytest

from mailkit import dns
from mailkit.dns import Status, SubmissionServer

from .fake_dns import SERVFAIL, TIMEOUT, FakeResolver, txt


def servers(table) -> dns.Lookup:
    return dns.submission_servers("partner.org", FakeResolver(table))


def test_submission_servers_are_ordered_by_priority_across_both_services():
    lookup = servers(
        {
            ("_submission._tcp.partner.org", "SRV"): ["10 1 587 backup.partner.org."],
            ("_submissions._tcp.partner.org", "SRV"): [
                "20 1 465 last.partner.org.",
                "5 1 465 smtp.partner.org.",
            ],
        }
    )
    assert lookup.status == Status.FOUND
    assert lookup.values == (
        SubmissionServer("smtp.partner.org", 465, "tls"),
        SubmissionServer("backup.partner.org", 587, "starttls"),
        SubmissionServer("last.partner.org", 465, "tls"),
    )


def test_submission_servers_prefer_heavier_weight_then_implicit_tls_on_a_tie():
    lookup = servers(
        {
            ("_submission._tcp.partner.org", "SRV"): ["0 0 587 a.partner.org."],
            ("_submissions._tcp.partner.org", "SRV"): [
                "0 0 465 b.partner.org.",
                "0 50 465 c.partner.org.",
            ],
        }
    )
    assert [s.host for s in lookup.values] == ["c.partner.org", "b.partner.org", "a.partner.org"]


def test_a_dot_target_means_the_service_is_not_offered():
    lookup = servers(
        {
            ("_submissions._tcp.partner.org", "SRV"): ["0 0 0 ."],
            ("_submission._tcp.partner.org", "SRV"): ["0 1 587 smtp.partner.org."],
        }
    )
    assert lookup.values == (SubmissionServer("smtp.partner.org", 587, "starttls"),)

    only_dot = servers({("_submissions._tcp.partner.org", "SRV"): ["0 0 0 ."]})
    assert only_dot.status == Status.MISSING
    assert only_dot.values == ()


@pytest.mark.parametrize(
    ("answer", "status"),
    [(None, Status.MISSING), (TIMEOUT, Status.UNKNOWN), (SERVFAIL, Status.UNKNOWN)],
)
def test_submission_lookup_failures_are_results(answer, status):
    table = {} if answer is None else {("_submission._tcp.partner.org", "SRV"): answer}
    assert servers(table).status == status


def test_spf_record_is_the_v_spf1_txt_record_with_its_strings_joined():
    resolver = FakeResolver(
        {
            ("partner.org", "TXT"): [
                txt("google-site-verification=abc"),
                txt("v=spf1 ip4:192.0.2.0/24 ", "include:_spf.example.net -all"),
            ]
        }
    )
    lookup = dns.spf_records("partner.org", resolver)
    assert lookup.values == ("v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all",)


def test_dmarc_record_is_read_at_the_dmarc_label_only():
    resolver = FakeResolver(
        {
            ("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")],
            ("_dmarc.sub.partner.org", "TXT"): [txt("something else")],
        }
    )
    assert dns.dmarc_records("partner.org", resolver).values == ("v=DMARC1; p=reject",)
    # No fallback to the organisational domain: see the docstring.
    assert dns.dmarc_records("sub.partner.org", resolver).status == Status.MISSING
    assert [q for q in resolver.queries if q[0] == "_dmarc.partner.org"] == [
        ("_dmarc.partner.org", "TXT")
    ]


@pytest.mark.parametrize(
    ("table", "status"),
    [
        ({}, Status.MISSING),
        ({("partner.org", "MX"): ["10 mx.partner.org."]}, Status.MISSING),  # NoAnswer
        ({("partner.org", "TXT"): TIMEOUT}, Status.UNKNOWN),
        ({("partner.org", "TXT"): SERVFAIL}, Status.UNKNOWN),
    ],
)
def test_txt_failures_are_results(table, status):
    assert dns.spf_records("partner.org", FakeResolver(table)).status == status


def test_host_addresses_joins_ipv4_and_ipv6_and_accepts_ip_literals():
    resolver = FakeResolver(
        {("smtp.partner.org", "A"): ["192.0.2.7"], ("smtp.partner.org", "AAAA"): ["2001:db8::7"]}
    )
    assert dns.host_addresses("smtp.partner.org", resolver).values == ("192.0.2.7", "2001:db8::7")
    assert dns.host_addresses("192.0.2.9", resolver).values == ("192.0.2.9",)
    assert dns.host_addresses("nowhere.partner.org", resolver).status == Status.MISSING
