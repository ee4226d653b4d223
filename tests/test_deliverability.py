"""SPF and DMARC for an alias domain, per path, from tables of fake DNS answers."""

from __future__ import annotations

import pytest

from gateways.deliverability import (
    Dmarc,
    Policy,
    SpfCheck,
    SpfEvaluator,
    SpfResult,
    Verdict,
    Why,
    assess,
    parse_dmarc,
    spf_alignment,
    spf_for_host,
)
from mailkit import dns

from .fake_dns import SERVFAIL, TIMEOUT, FakeResolver, txt

IP = "192.0.2.10"
IP6 = "2001:db8::10"

# Shared records the SPF table below refers to.
BASE = {
    ("inc.partner.org", "TXT"): [txt("v=spf1 ip4:192.0.2.0/28 -all")],
    ("other.partner.org", "TXT"): [txt("v=spf1 ip4:198.51.100.0/24 -all")],
    ("mail.partner.org", "A"): ["192.0.2.10"],
    ("mail.partner.org", "AAAA"): ["2001:db8::10"],
    ("partner.org", "MX"): ["10 mx1.partner.org.", "20 mx2.partner.org."],
    ("mx2.partner.org", "A"): ["192.0.2.10"],
    ("mx1.partner.org", "A"): ["203.0.113.1"],
    ("backup.net", "MX"): ["10 mx.backup.net."],
    ("mx.backup.net", "A"): ["192.0.2.14"],
    ("net.partner.org", "A"): ["192.0.2.200"],
    ("slow.partner.org", "TXT"): TIMEOUT,
    ("nothing.partner.org", "A"): ["203.0.113.9"],  # exists, has no TXT
    ("two.partner.org", "TXT"): [txt("v=spf1 -all"), txt("v=spf1 +all")],
}


def spf(record: str, ip: str = IP, extra: dict | None = None) -> SpfCheck:
    table = BASE | {("partner.org", "TXT"): [txt(record)]} | (extra or {})
    return SpfEvaluator(FakeResolver(table)).check(ip, "partner.org")


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", IP, SpfResult.PASS),
        ("v=spf1 ip4:192.0.2.10 -all", IP, SpfResult.PASS),
        ("v=spf1 ip4:198.51.100.0/24 -all", IP, SpfResult.FAIL),
        ("v=spf1 ip4:198.51.100.0/24 ~all", IP, SpfResult.SOFTFAIL),
        ("v=spf1 ip4:198.51.100.0/24 ?all", IP, SpfResult.NEUTRAL),
        ("v=spf1 ip4:198.51.100.0/24", IP, SpfResult.NEUTRAL),  # no match, no all
        ("v=spf1 -ip4:192.0.2.10 +all", IP, SpfResult.FAIL),  # first match wins
        ("v=spf1 ~ip4:192.0.2.10 -all", IP, SpfResult.SOFTFAIL),
        ("v=spf1 ip6:2001:db8::/32 -all", IP6, SpfResult.PASS),
        ("v=spf1 ip6:2001:db8::/32 -all", IP, SpfResult.FAIL),  # v6 network, v4 sender
        ("v=spf1 ip4:192.0.2.0/24 -all", IP6, SpfResult.FAIL),
        ("v=spf1 a:mail.partner.org -all", IP, SpfResult.PASS),
        ("v=spf1 a:mail.partner.org -all", IP6, SpfResult.PASS),
        ("v=spf1 a:net.partner.org/24 -all", IP, SpfResult.PASS),  # cidr on a
        ("v=spf1 a:net.partner.org -all", IP, SpfResult.FAIL),
        ("v=spf1 a -all", IP, SpfResult.FAIL),  # partner.org itself has no A record
        ("v=spf1 mx -all", IP, SpfResult.PASS),  # the second MX is the sender
        ("v=spf1 mx:backup.net -all", "192.0.2.14", SpfResult.PASS),
        ("v=spf1 mx:backup.net -all", IP, SpfResult.FAIL),
        ("v=spf1 include:inc.partner.org -all", IP, SpfResult.PASS),
        ("v=spf1 include:other.partner.org -all", IP, SpfResult.FAIL),  # include's -all: no match
        ("v=spf1 include:other.partner.org ~all", IP, SpfResult.SOFTFAIL),
        ("v=spf1 include:missing.partner.org -all", IP, SpfResult.PERMERROR),
        ("v=spf1 include:nothing.partner.org -all", IP, SpfResult.PERMERROR),
        ("v=spf1 include:two.partner.org -all", IP, SpfResult.PERMERROR),
        ("v=spf1 redirect=inc.partner.org", IP, SpfResult.PASS),
        ("v=spf1 redirect=other.partner.org", IP, SpfResult.FAIL),
        ("v=spf1 ip4:192.0.2.10 redirect=other.partner.org", IP, SpfResult.PASS),
        ("v=spf1 -all redirect=inc.partner.org", IP, SpfResult.FAIL),  # all wins over redirect
        ("v=spf1 redirect=missing.partner.org", IP, SpfResult.PERMERROR),
        ("v=spf1 exp=explain.partner.org ip4:192.0.2.10 -all", IP, SpfResult.PASS),
        ("v=spf1 bogus:thing -all", IP, SpfResult.PERMERROR),
        ("v=spf1 ip4:not-an-ip -all", IP, SpfResult.PERMERROR),
        ("v=spf1 include:slow.partner.org -all", IP, SpfResult.UNKNOWN),
    ],
)
def test_spf_evaluation(record, ip, expected):
    assert spf(record, ip).result == expected


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 exists:%{i}.spf.partner.org -all",
        "v=spf1 exists:check.partner.org -all",
        "v=spf1 ptr -all",
        "v=spf1 ptr:partner.org -all",
        "v=spf1 a:%{d} -all",
        "v=spf1 include:%{d2}.partner.org -all",
    ],
)
def test_unsupported_mechanisms_and_macros_give_unknown_rather_than_a_guess(record):
    assert spf(record) == SpfCheck(SpfResult.UNKNOWN, Why.UNSUPPORTED)


def test_a_pass_before_an_unsupported_term_is_still_a_pass():
    assert spf("v=spf1 ip4:192.0.2.10 ptr -all").result == SpfResult.PASS


def chain(depth: int) -> dict:
    """partner.org includes l1, l1 includes l2, ... the last one lists the sender."""
    table = {("partner.org", "TXT"): [txt("v=spf1 include:l1.partner.org -all")]}
    for level in range(1, depth):
        table[(f"l{level}.partner.org", "TXT")] = [
            txt(f"v=spf1 include:l{level + 1}.partner.org -all")
        ]
    table[(f"l{depth}.partner.org", "TXT")] = [txt(f"v=spf1 ip4:{IP} -all")]
    return table


def test_ten_dns_lookups_are_allowed():
    assert SpfEvaluator(FakeResolver(chain(10))).check(IP, "partner.org").result == SpfResult.PASS


def test_the_eleventh_dns_lookup_gives_unknown():
    check = SpfEvaluator(FakeResolver(chain(11))).check(IP, "partner.org")
    assert check == SpfCheck(SpfResult.UNKNOWN, Why.TOO_MANY_LOOKUPS)


def test_a_and_mx_terms_count_towards_the_limit():
    terms = " ".join(f"a:h{i}.partner.org" for i in range(10)) + " mx -all"
    assert spf(f"v=spf1 {terms}").why == Why.TOO_MANY_LOOKUPS
    terms = " ".join(f"a:h{i}.partner.org" for i in range(9)) + " mx -all"
    assert spf(f"v=spf1 {terms}").result == SpfResult.PASS


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, SpfCheck(SpfResult.NONE)),  # NXDOMAIN
        ([txt("just some text")], SpfCheck(SpfResult.NONE)),
        ([txt("v=spf1 -all"), txt("v=spf1 +all")], SpfCheck(SpfResult.PERMERROR)),
        (TIMEOUT, SpfCheck(SpfResult.UNKNOWN, Why.DNS)),
        (SERVFAIL, SpfCheck(SpfResult.UNKNOWN, Why.DNS)),
    ],
)
def test_the_top_level_record_lookup(answer, expected):
    table = {} if answer is None else {("partner.org", "TXT"): answer}
    assert SpfEvaluator(FakeResolver(table)).check(IP, "partner.org") == expected


def test_a_timeout_on_an_a_term_gives_unknown():
    check = spf("v=spf1 a:mail.partner.org -all", extra={("mail.partner.org", "A"): TIMEOUT})
    assert check == SpfCheck(SpfResult.UNKNOWN, Why.DNS)


def test_spf_for_a_host_agrees_across_its_addresses_or_says_unknown():
    resolver = FakeResolver(BASE)
    records = dns.Lookup(dns.Status.FOUND, ("v=spf1 ip4:192.0.2.0/24 -all",))
    both = dns.Lookup(dns.Status.FOUND, (IP, "192.0.2.11"))
    assert spf_for_host("partner.org", both, records, resolver).result == SpfResult.PASS
    mixed = dns.Lookup(dns.Status.FOUND, (IP, "198.51.100.1"))
    assert spf_for_host("partner.org", mixed, records, resolver).why == Why.MIXED
    none = dns.Lookup(dns.Status.MISSING)
    assert spf_for_host("partner.org", none, records, resolver).why == Why.NO_ADDRESS
    slow = dns.Lookup(dns.Status.UNKNOWN)
    assert spf_for_host("partner.org", slow, records, resolver).why == Why.DNS


# --- DMARC ----------------------------------------------------------------------------------


def dmarc(*records: str) -> Dmarc:
    return parse_dmarc(dns.Lookup(dns.Status.FOUND, records))


@pytest.mark.parametrize(
    ("record", "policy", "strict"),
    [
        ("v=DMARC1; p=reject", Policy.REJECT, False),
        ("v=DMARC1;p=quarantine;rua=mailto:d@partner.org", Policy.QUARANTINE, False),
        ("v=DMARC1; p=none", Policy.NONE, False),
        ("v=DMARC1; P=Reject; aspf=s", Policy.REJECT, True),
        ("v=DMARC1; p=none; sp=reject", Policy.NONE, False),  # sp= is ignored for now
        ("v=DMARC1; rua=mailto:d@partner.org", Policy.NONE, False),  # no p=, reports wanted
        ("v=DMARC1; p=bogus; rua=mailto:d@partner.org", Policy.NONE, False),
    ],
)
def test_dmarc_policy_parsing(record, policy, strict):
    assert dmarc(record) == Dmarc(dns.Status.FOUND, policy, strict_spf=strict)


def test_dmarc_without_a_usable_record_is_missing_and_a_failed_lookup_is_unknown():
    assert dmarc("v=DMARC1; p=bogus").status == dns.Status.MISSING
    assert dmarc("v=DMARC1; p=reject", "v=DMARC1; p=none").status == dns.Status.MISSING
    assert parse_dmarc(dns.Lookup(dns.Status.MISSING)).status == dns.Status.MISSING
    assert parse_dmarc(dns.Lookup(dns.Status.UNKNOWN)).status == dns.Status.UNKNOWN


@pytest.mark.parametrize(
    ("from_domain", "spf_domain", "strict", "expected"),
    [
        ("partner.org", "example.com", False, Verdict.FAIL),
        ("partner.org", "partner.org", True, Verdict.PASS),
        ("news.example.com", "example.com", False, Verdict.PASS),
        ("news.example.com", "example.com", True, Verdict.FAIL),
        ("example.com", "mail.example.com", False, Verdict.PASS),
        ("a.example.com", "b.example.com", False, Verdict.UNKNOWN),  # needs the PSL
        ("partner.org", "example.org", False, Verdict.FAIL),
    ],
)
def test_spf_alignment(from_domain, spf_domain, strict, expected):
    assert spf_alignment(from_domain, spf_domain, strict) == expected


# --- the sentences, per path ----------------------------------------------------------------

PARTNER_SPF = ("partner.org", "TXT"), [txt("v=spf1 ip4:192.0.2.0/24 -all")]
SMTP_PARTNER = {("smtp.partner.org", "A"): [IP]}


def hints(table: dict, gateway_host: str | None = "smtp.partner.org", using_gateway=True):
    return assess(
        alias_domain="partner.org",
        envelope_domain="example.com",
        org_name="example.com",
        gateway_host=gateway_host,
        using_gateway=using_gateway,
        resolver=FakeResolver(table),
    )


def test_p_reject_means_the_domain_path_is_likely_rejected_and_the_gateway_passes():
    domain, gateway = hints(
        {
            ("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")],
            PARTNER_SPF[0]: PARTNER_SPF[1],
            **SMTP_PARTNER,
        }
    )
    assert (domain.spf, domain.dmarc, domain.in_use) == (
        Verdict.NOT_APPLICABLE,
        Verdict.FAIL,
        False,
    )
    assert domain.sentences == (
        "Through example.com's servers the envelope sender is in example.com, so receivers "
        "check SPF for example.com, not for partner.org.",
        "partner.org publishes p=reject: mail sent as this alias through example.com's servers "
        "is likely to be rejected.",
    )
    assert (gateway.spf, gateway.dmarc, gateway.in_use) == (Verdict.PASS, Verdict.PASS, True)
    assert gateway.sentences == (
        "Through smtp.partner.org it passes SPF for partner.org.",
        "partner.org publishes p=reject, and mail sent through smtp.partner.org passes DMARC.",
    )


def test_a_gateway_not_in_the_spf_record_fails_and_quarantine_means_spam():
    _domain, gateway = hints(
        {
            ("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=quarantine")],
            PARTNER_SPF[0]: PARTNER_SPF[1],
            ("smtp.partner.org", "A"): ["198.51.100.5"],
        }
    )
    assert gateway.dmarc == Verdict.FAIL
    assert gateway.sentences == (
        "Through smtp.partner.org it probably does not pass SPF for partner.org: the server's "
        "addresses are not listed in its SPF record.",
        "partner.org publishes p=quarantine: mail sent as this alias through smtp.partner.org "
        "is likely to land in spam.",
    )


def test_without_a_gateway_only_the_domain_path_is_judged_and_p_none_is_delivered():
    (domain,) = hints(
        {("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=none")]},
        gateway_host=None,
        using_gateway=False,
    )
    assert domain.in_use
    assert domain.sentences[-1] == (
        "partner.org publishes p=none: mail sent as this alias through example.com's servers "
        "fails DMARC but is usually delivered."
    )


def test_no_dmarc_record_lets_receivers_decide():
    domain, gateway = hints({PARTNER_SPF[0]: PARTNER_SPF[1], **SMTP_PARTNER})
    assert domain.policy is None
    assert domain.sentences[-1] == (
        "partner.org publishes no DMARC policy: receivers decide for themselves how to treat mail "
        "sent as this alias through example.com's servers."
    )
    assert gateway.spf == Verdict.PASS
    assert gateway.dmarc == Verdict.PASS  # aligned SPF pass: authenticated, policy or not


@pytest.mark.parametrize("failure", [TIMEOUT, SERVFAIL])
def test_dns_timeouts_give_readable_unknown_sentences(failure):
    domain, gateway = hints(
        {
            ("_dmarc.partner.org", "TXT"): failure,
            ("partner.org", "TXT"): failure,
            **SMTP_PARTNER,
        }
    )
    assert domain.dmarc == gateway.spf == gateway.dmarc == Verdict.UNKNOWN
    assert domain.sentences[-1] == (
        "We could not look up partner.org's DMARC policy (DNS did not answer), so we cannot tell "
        "how receivers treat mail sent as this alias through example.com's servers."
    )
    assert gateway.sentences[0] == (
        "We cannot tell whether mail through smtp.partner.org passes SPF for partner.org: DNS did "
        "not answer."
    )


def test_an_alias_domain_that_does_not_exist_gives_none_and_an_unresolvable_gateway_unknown():
    domain, gateway = hints({})  # everything is NXDOMAIN
    assert domain.dmarc == Verdict.FAIL  # no DMARC: nothing to pass; receivers decide
    assert gateway.spf == Verdict.UNKNOWN
    assert gateway.sentences[0] == (
        "We cannot tell whether mail through smtp.partner.org passes SPF for partner.org: we "
        "could not find the server's address."
    )


def test_unknown_spf_on_the_gateway_with_p_reject_says_if():
    _domain, gateway = hints(
        {
            ("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")],
            ("partner.org", "TXT"): [txt("v=spf1 exists:%{i}.x.partner.org -all")],
            **SMTP_PARTNER,
        }
    )
    assert gateway.sentences == (
        "We cannot tell whether mail through smtp.partner.org passes SPF for partner.org: its SPF "
        "record uses features we do not evaluate (exists, ptr or macros).",
        "partner.org publishes p=reject: if mail sent as this alias through smtp.partner.org "
        "fails DMARC, it is likely to be rejected.",
    )


def test_a_subdomain_of_the_org_domain_is_aligned_on_the_domain_path():
    (domain,) = assess(
        alias_domain="news.example.com",
        envelope_domain="example.com",
        org_name="example.com",
        gateway_host=None,
        using_gateway=False,
        resolver=FakeResolver({("_dmarc.news.example.com", "TXT"): [txt("v=DMARC1; p=reject")]}),
    )
    assert domain.dmarc == Verdict.UNKNOWN  # depends on example.com's own SPF
    assert "count as one organisation for DMARC" in domain.sentences[1]


def test_an_aligned_dkim_key_makes_the_domain_path_pass_dmarc():
    (domain,) = assess(
        alias_domain="example.com",
        envelope_domain="example.com",
        org_name="example.com",
        gateway_host=None,
        using_gateway=False,
        resolver=FakeResolver({("_dmarc.example.com", "TXT"): [txt("v=DMARC1; p=reject")]}),
        dkim_domain="example.com",
    )
    assert domain.dmarc == Verdict.PASS
    assert (
        "Sendgate signs this mail with DKIM for example.com, which is aligned with example.com: "
        "it passes DMARC by DKIM." in domain.sentences
    )
    assert domain.sentences[-1] == (
        "example.com publishes p=reject, and mail sent through example.com's servers passes DMARC."
    )


def test_a_signature_for_the_sender_domain_does_not_rescue_a_foreign_alias():
    domain, _gateway = hints(
        {("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")], **SMTP_PARTNER},
    )
    (signed,) = assess(
        alias_domain="partner.org",
        envelope_domain="example.com",
        org_name="example.com",
        gateway_host=None,
        using_gateway=False,
        resolver=FakeResolver({("_dmarc.partner.org", "TXT"): [txt("v=DMARC1; p=reject")]}),
        dkim_domain="example.com",
    )
    assert signed.dmarc == domain.dmarc == Verdict.FAIL
    assert any("does not count for DMARC of partner.org" in s for s in signed.sentences)


def test_strict_dkim_alignment_refuses_a_parent_domain_signature():
    (domain,) = assess(
        alias_domain="news.example.com",
        envelope_domain="example.com",
        org_name="example.com",
        gateway_host=None,
        using_gateway=False,
        resolver=FakeResolver(
            {("_dmarc.news.example.com", "TXT"): [txt("v=DMARC1; p=reject; adkim=s; aspf=s")]}
        ),
        dkim_domain="example.com",
    )
    assert domain.dmarc == Verdict.FAIL
