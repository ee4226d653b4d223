"""The connection test's transcript: what the server really said, with the password hidden."""

from __future__ import annotations

import asyncio

from django.utils import translation

from gateways.connection_test import probe
from gateways.models import SmtpServer
from mailkit.smtp import readable_transcript

PARTNER = "ann@partner.org"
SECRET = "s3cret-Pa55"


def server_for(peer) -> SmtpServer:
    return SmtpServer(host="localhost", port=peer.port, username="bob@partner.org", password=SECRET)


def test_the_transcript_keeps_the_refusal_of_auth_every_ehlo_line_and_the_second_ehlo(
    fault_peer, pki, trust_test_ca
):
    peer = fault_peer(starttls=pki.server_context, auth_reply="535 5.7.8 authentication failed")
    outcome = asyncio.run(probe(server_for(peer), PARTNER))
    lines = outcome.transcript
    assert not outcome.ok
    assert lines[-1] == "S: 535 5.7.8 authentication failed"  # the reply to AUTH, not dropped
    assert lines[-2].startswith("C: AUTH PLAIN")

    # EHLO before and after STARTTLS, each with every line of its reply and its codes.
    starttls = lines.index("C: STARTTLS")
    before, after = lines[:starttls], lines[starttls:]
    assert [line for line in before if line.startswith("S: 250")] == [
        "S: 250-fault.test",
        "S: 250-8BITMIME",
        "S: 250 STARTTLS",
    ]
    assert after[1] == "S: 220 2.0.0 go ahead"
    assert after[2].startswith("C: EHLO ")
    assert after[3:6] == ["S: 250-fault.test", "S: 250-8BITMIME", "S: 250 AUTH PLAIN LOGIN"]
    assert SECRET not in "\n".join(lines)


def test_a_server_that_echoes_the_password_does_not_put_it_in_the_transcript(
    fault_peer, pki, trust_test_ca
):
    peer = fault_peer(starttls=pki.server_context, auth_reply=f"535 5.7.8 {SECRET} is wrong")
    outcome = asyncio.run(probe(server_for(peer), PARTNER))
    assert "S: 535 5.7.8 … is wrong" in outcome.transcript
    assert SECRET not in "\n".join(outcome.transcript)


def test_the_transcript_notes_are_translated_and_the_protocol_is_not():
    stored = [
        "* connected to smtp.partner.org:587",
        "S: 220 smtp.partner.org ESMTP ready",
        "C: AUTH PLAIN (credentials hidden)",
        "S: 535 5.7.8 authentication failed",
    ]
    with translation.override("nl"):
        shown = readable_transcript(stored)
    assert shown == [
        "* verbonden met smtp.partner.org:587",
        "S: 220 smtp.partner.org ESMTP ready",
        "C: AUTH PLAIN (inloggegevens verborgen)",
        "S: 535 5.7.8 authentication failed",
    ]
    with translation.override("en"):
        assert readable_transcript(stored) == stored
