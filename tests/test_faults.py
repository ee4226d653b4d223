"""Misbehaving peers on real sockets: every fault ends in a recorded, correct outcome."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from email.policy import default

import dns.name
import dns.resolver
import pytest
from django.utils import timezone

from gateways import server_state
from gateways.models import SendAsAlias, SmtpServer
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import DeliveryAttempt, Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import server_for
from .fault_peer import FaultPeer

BOB, CARL, DORA = "bob@elsewhere.test", "carl@elsewhere.test", "dora@elsewhere.test"


def send(people, recipients=(BOB,)) -> Message:
    message = accept_message(people.user, people.user.email, list(recipients), "Hi", "Body")
    return attempt(message)


def attempt(message: Message) -> Message:
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver(message.pk)
    message.refresh_from_db()
    return message


def reports_for(people) -> list[Message]:
    return list(Message.objects.filter(kind=Message.Kind.REPORT, account=people.user))


def test_421_at_greeting_defers_with_backoff(people, gateway_is, fault_peer):
    gateway_is(fault_peer(greeting="421 4.3.2 try later"))
    before = timezone.now()
    message = send(people)
    assert message.state == Message.State.DEFERRED
    assert "421" in message.last_reply
    assert message.next_attempt_at >= before + timedelta(minutes=5)
    assert message.attempts.get().outcome == "deferred"
    assert reports_for(people) == []


def test_one_recipient_deferred_one_failed_others_delivered_then_retried_once(
    people, gateway_is, fault_peer
):
    peer = gateway_is(
        fault_peer(rcpt_replies={CARL: "451 4.2.0 mailbox busy", DORA: "550 5.1.1 no such user"})
    )
    message = send(people, [BOB, CARL, DORA])

    assert [d.rcpt_tos for d in peer.delivered] == [[BOB]]
    assert message.state == Message.State.DEFERRED
    assert message.pending_recipients == [CARL]
    assert message.failed_recipients == {DORA: "550 5.1.1 no such user"}

    peer.script.rcpt_replies = {}  # the busy mailbox recovers
    message = attempt(message)
    assert [d.rcpt_tos for d in peer.delivered] == [[BOB], [CARL]]  # Bob is not sent twice
    assert message.state == Message.State.SENT
    assert peer.delivered[0].data == peer.delivered[1].data  # same Message-ID on the retry

    [report] = reports_for(people)
    parsed = message_from_bytes(bytes(report.raw))
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    human, status, headers = parsed.get_payload()
    assert DORA in human.get_payload() and "no such user" in human.get_payload()
    per_message, *per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"].startswith("dns; ")
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in per_recipient] == [
        (f"rfc822; {DORA}", "failed", "5.1.1")
    ]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert message.message_id in headers.get_payload()


def test_554_after_data_fails_and_the_sender_gets_a_report_with_null_sender(
    people, gateway_is, fault_peer
):
    peer = gateway_is(fault_peer(data_reply="554 5.7.1 rejected as spam"))
    message = send(people)
    assert message.state == Message.State.FAILED
    assert message.failed_recipients == {BOB: "The server answered 554 5.7.1 rejected as spam."}

    [report] = reports_for(people)
    assert report.recipients == [people.user.email]
    peer.script.data_reply = "250 ok"
    attempt(report)
    assert peer.delivered[-1].mail_from == ""  # MAIL FROM:<>, so a report can never loop
    assert b"Action: failed" in peer.delivered[-1].data


def test_a_failing_report_is_not_reported_again(people, gateway_is, fault_peer):
    gateway_is(fault_peer(data_reply="554 5.7.1 no"))
    send(people)
    [report] = reports_for(people)
    attempt(report)
    assert len(reports_for(people)) == 1


@pytest.mark.parametrize("fault", ["drop_mid_data", "drop_after_dot"])
def test_dropped_connection_during_data_is_deferred_not_lost(people, gateway_is, fault_peer, fault):
    peer = gateway_is(fault_peer(**{fault: True}))
    message = send(people)
    assert message.state == Message.State.DEFERRED
    assert message.pending_recipients == [BOB]
    assert peer.delivered == []
    assert "closed the connection" in message.last_reply or "did not finish" in message.last_reply


@pytest.mark.parametrize(
    "script", [{"greeting": None}, {"drip_seconds": 0.4}], ids=["no-greeting", "one-byte-at-a-time"]
)
def test_stalled_peer_is_cut_off_by_the_overall_deadline(
    people, gateway_is, fault_peer, settings, script
):
    settings.SENDGATE_SMTP_DEADLINE = 1.5
    gateway_is(fault_peer(**script))
    message = send(people)
    assert message.state == Message.State.DEFERRED
    assert "did not finish within 1.5 seconds" in message.last_reply


def test_certificate_for_another_host_is_refused(people, gateway_is, smtp_peer, pki):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("mail.other.test").configure_cert(context)
    peer = smtp_peer("relay@example.com", "s", tls=context)
    people.domain.outbound_gateway = server_for(peer)
    people.domain.save()
    message = send(people)
    assert message.state == Message.State.DEFERRED and peer.messages == []
    assert "certificate" in message.last_reply and "localhost" in message.last_reply


@pytest.fixture
def alias_gateway(people, trust_test_ca, fault_peer, pki, gateway_is):
    """Ann's alias whose own server offers STARTTLS and answers AUTH as scripted."""
    domain_gateway = gateway_is(fault_peer())
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()

    def make(auth_reply: str) -> tuple[FaultPeer, SmtpServer]:
        peer = fault_peer(starttls=pki.server_context, auth_reply=auth_reply)
        server = SmtpServer.objects.create(
            host="localhost",
            port=peer.port,
            username="ann@partner.org",
            password="pw",
            last_test_ok=True,
        )
        SendAsAlias.objects.create(
            account=people.user,
            address="ann@partner.org",
            state=SendAsAlias.State.VERIFIED,
            smtp_server=server,
        )
        return peer, server

    make.domain_gateway = domain_gateway
    return make


def test_535_pauses_the_users_gateway_holds_the_mail_and_tells_the_owner(people, alias_gateway):
    peer, server = alias_gateway("535 5.7.8 authentication failed")
    message = accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body")
    message = attempt(message)

    server.refresh_from_db()
    assert server.is_paused and "535" in server.pause_reason
    assert message.state == Message.State.DEFERRED
    [notice] = reports_for(people)
    body = message_from_bytes(bytes(notice.raw), policy=default).get_content()
    assert "refused the username or password" in body and "update the password" in body

    connections = peer.connections
    message = attempt(message)  # while paused: not tried, not sent another way
    assert peer.connections == connections
    assert message.state == Message.State.DEFERRED and "paused" in message.last_reply
    assert [d.rcpt_tos for d in alias_gateway.domain_gateway.delivered if d.mail_from != ""] == []
    assert len(reports_for(people)) == 1  # told once

    peer.script.auth_reply = "235 2.7.0 ok"
    server_state.passed_test(server, "235 ok")  # the owner fixed the password
    server.save()
    assert attempt(message).state == Message.State.SENT
    assert peer.delivered[0].mail_from == "ann@partner.org"


def test_454_on_auth_is_temporary_and_does_not_pause(people, alias_gateway):
    _peer, server = alias_gateway("454 4.7.0 temporary authentication failure")
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    server.refresh_from_db()
    assert not server.is_paused
    assert message.state == Message.State.DEFERRED and "454" in message.last_reply
    assert reports_for(people) == []


def test_message_older_than_the_queue_lifetime_fails_with_a_report(people, gateway_is, fault_peer):
    gateway_is(fault_peer(rcpt_replies={BOB: "451 4.4.1 still busy"}))
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "Body")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=6))
    message = attempt(message)
    assert message.state == Message.State.FAILED
    assert "Gave up after 5 days" in message.failed_recipients[BOB]
    assert len(reports_for(people)) == 1


def test_delay_warning_is_sent_once(people, gateway_is, fault_peer, settings):
    settings.SENDGATE_DELAY_WARNING_HOURS = 1
    gateway_is(fault_peer(rcpt_replies={BOB: "451 4.4.1 busy"}))
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "Body")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(hours=2))
    attempt(message)
    attempt(message)
    [warning] = reports_for(people)
    assert b"Action: delayed" in bytes(warning.raw)
    assert Message.objects.get(pk=message.pk).state == Message.State.DEFERRED


class FakeResolver:
    """Answers MX queries from a table; any other name does not exist."""

    def __init__(self, mx: dict[str, list[tuple[int, str]]]) -> None:
        self.mx = mx

    def resolve(self, qname, rdtype, lifetime=None):
        if qname not in self.mx:
            raise dns.resolver.NXDOMAIN
        return [
            type("MX", (), {"preference": p, "exchange": dns.name.from_text(host)})
            for p, host in self.mx[qname]
        ]


def test_direct_mx_delivery_per_destination_in_preference_order(
    people, trust_test_ca, fault_peer, settings
):
    mx = fault_peer()
    settings.SENDGATE_DIRECT_MX_PORT = mx.port
    resolver = FakeResolver({"elsewhere.test": [(20, "localhost"), (10, "dead.invalid")]})
    message = accept_message(people.user, people.user.email, [BOB, "x@nowhere.test"], "Hi", "B")
    delivery.deliver(message.pk, resolver=resolver)
    message.refresh_from_db()

    assert [d.rcpt_tos for d in mx.delivered] == [[BOB]]
    assert message.last_route == "direct_mx"
    assert list(message.failed_recipients) == ["x@nowhere.test"]
    assert "does not exist" in message.failed_recipients["x@nowhere.test"]
    assert message.state == Message.State.SENT
    assert mx.delivered[0].mail_from == people.user.email


def test_554_followed_by_a_hang_up_stays_permanent(people, gateway_is, fault_peer):
    gateway_is(fault_peer(data_reply="554 5.7.1 rejected", drop_after_reply=True))
    message = send(people)
    assert message.state == Message.State.FAILED
    assert "554" in message.failed_recipients[BOB]


def test_a_batch_shares_one_connection_and_each_message_keeps_its_own_outcome(
    people, gateway_is, fault_peer
):
    peer = gateway_is(fault_peer(rcpt_replies={CARL: "550 5.1.1 unknown"}))
    ids = [
        accept_message(people.user, people.user.email, [r], "Hi", "B").pk for r in (BOB, CARL, DORA)
    ]
    delivery.deliver_batch(ids)

    assert peer.connections == 1
    assert [d.rcpt_tos for d in peer.delivered] == [[BOB], [DORA]]
    states = dict(Message.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert [states[pk] for pk in ids] == ["sent", "failed", "sent"]
    assert DeliveryAttempt.objects.filter(message_id__in=ids).count() == 3


def test_an_unreachable_server_costs_one_deadline_for_the_whole_batch(
    people, gateway_is, fault_peer, settings
):
    settings.SENDGATE_SMTP_DEADLINE = 1
    peer = gateway_is(fault_peer(greeting=None))
    ids = [accept_message(people.user, people.user.email, [BOB], "Hi", "B").pk for _ in range(5)]
    delivery.deliver_batch(ids)
    assert peer.connections == 1
    assert set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"deferred"}


def test_a_slow_server_cannot_push_a_batch_past_its_time_budget(
    people, gateway_is, fault_peer, settings
):
    """What a batch did not start in time is handed back untouched, then sent exactly once."""
    settings.SENDGATE_BATCH_SECONDS = 0.5
    peer = gateway_is(fault_peer(data_delay=0.3))
    ids = [accept_message(people.user, people.user.email, [BOB], f"#{n}", "B").pk for n in range(6)]
    delivery.deliver_batch(ids)

    sent = set(Message.objects.filter(pk__in=ids, state="sent").values_list("pk", flat=True))
    handed_back = Message.objects.filter(pk__in=ids, state="queued")
    assert 1 <= len(sent) < 6 and handed_back.count() == 6 - len(sent)
    assert {m.attempt_count for m in handed_back} == {0}
    assert not DeliveryAttempt.objects.filter(message__in=handed_back).exists()

    settings.SENDGATE_BATCH_SECONDS = 60
    delivery.deliver_batch(ids)
    assert len(peer.delivered) == 6
    assert set(Message.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"sent"}


def test_direct_delivery_never_falls_back_to_plaintext_when_the_domain_requires_tls(
    people, trust_test_ca, fault_peer, settings, pki
):
    people.domain.require_tls_direct = True
    people.domain.save()
    plain = fault_peer()  # offers no STARTTLS
    settings.SENDGATE_DIRECT_MX_PORT = plain.port
    resolver = FakeResolver({"elsewhere.test": [(10, "localhost")]})
    message = accept_message(people.user, people.user.email, [BOB], "Hi", "B")
    delivery.deliver(message.pk, resolver=resolver)
    message.refresh_from_db()
    assert plain.delivered == [] and message.state == Message.State.DEFERRED
    assert "STARTTLS" in message.last_reply

    secure = fault_peer(starttls=pki.server_context)  # STARTTLS, certificate for localhost
    settings.SENDGATE_DIRECT_MX_PORT = secure.port
    message = attempt_with(message, resolver)
    assert message.state == Message.State.SENT and len(secure.delivered) == 1


def attempt_with(message: Message, resolver) -> Message:
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver(message.pk, resolver=resolver)
    message.refresh_from_db()
    return message


def test_basic_auth_retired_by_the_provider_pauses_and_points_to_sign_in(people, alias_gateway):
    _peer, server = alias_gateway(
        "550 5.7.30 Basic authentication is not supported for Client Submission"
    )
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    server.refresh_from_db()
    assert server.is_paused and "no longer accepts passwords" in server.pause_reason
    assert "Sign in with Microsoft" in server.pause_reason and "5.7.30" in server.pause_reason
    assert message.state == Message.State.DEFERRED  # waits for the owner, is not bounced
