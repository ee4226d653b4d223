"""DKIM: keys per domain, the DNS check, and signatures that an independent verifier accepts.

Signed mail goes through the real delivery path to an aiosmtpd MX on loopback; what that server
received is verified with dkimpy's verifier, which reads the key from the same fake DNS table the
admin "published" the record in.
"""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from io import StringIO
from pathlib import Path

import dkim
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from domainkeys.keys import check_dns, generate_key
from domainkeys.models import DkimKey
from gateways.models import SendAsAlias
from mailkit import dns as sendgate_dns
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, server_for
from .fake_dns import FakeResolver, txt
from .services import missing

BOB = "bob@elsewhere.test"


class Zone:
    """The public DNS as the tests see it: MX for elsewhere.test plus what admins publish."""

    def __init__(self) -> None:
        self.table: dict = {("elsewhere.test", "MX"): ["10 localhost."]}

    def publish(self, key: DkimKey, text: str | None = None) -> None:
        text = text or key.record_text
        self.table[(key.record_name, "TXT")] = [
            txt(*[text[i : i + 255] for i in range(0, len(text), 255)])
        ]

    def resolver(self) -> FakeResolver:
        return FakeResolver(dict(self.table))

    def verify(self, data: bytes, index: int = 0) -> bool:
        """dkimpy's verdict on the index-th DKIM-Signature, with the key from this zone."""

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            found = sendgate_dns.txt_records(name.decode().rstrip("."), self.resolver())
            return found.values[0].encode() if found.found else None

        try:
            return dkim.DKIM(data).verify(idx=index, dnsfunc=dnsfunc)
        except dkim.DKIMException:  # e.g. "body hash mismatch": a failed verification
            return False


@pytest.fixture
def zone() -> Zone:
    return Zone()


@pytest.fixture
def mx(mx_peer, trust_test_ca, settings):
    """elsewhere.test's mail server, reached directly (the domain has no outbound gateway)."""
    peer = mx_peer()
    settings.SENDGATE_DIRECT_MX_PORT = peer.port
    return peer


def active_key(people, zone: Zone, algorithm=DkimKey.Algorithm.RSA) -> DkimKey:
    key = generate_key(people.domain, algorithm)
    zone.publish(key)
    assert check_dns(key, zone.resolver())
    key.refresh_from_db()
    return key


def send(account, zone: Zone, from_address: str | None = None) -> Message:
    message = accept_message(account, from_address or account.email, [BOB], "Hello", "Body\n")
    delivery.deliver(message.pk, resolver=zone.resolver())
    message.refresh_from_db()
    return message


def signature_tags(data: bytes, index: int = 0) -> dict[str, str]:
    sigs = [v for k, v in dkim.DKIM(data).headers if k.lower() == b"dkim-signature"]
    value = b"".join(sigs[index].split()).decode()
    return dict(part.split("=", 1) for part in value.split(";") if "=" in part)


# --- keys and the DNS check ----------------------------------------------------------------------


def test_generate_command_prints_the_record_and_the_key_waits_for_dns(people):
    out = StringIO()
    call_command("dkim", "generate", "example.com", stdout=out)
    key = DkimKey.objects.get(domain=people.domain)
    today = timezone.localdate().strftime("%Y%m%d")
    assert key.selector == f"sg{today}" and key.state == DkimKey.State.WAITING
    printed = out.getvalue()
    assert f"sg{today}._domainkey.example.com. IN TXT" in printed
    assert '"v=DKIM1; k=rsa; p=' in printed
    assert key.private_key not in printed and "PRIVATE" not in printed

    call_command("dkim", "generate", "example.com", "--algorithm", "ed25519", stdout=StringIO())
    call_command("dkim", "generate", "example.com", stdout=StringIO())
    assert sorted(people.domain.dkim_keys.values_list("selector", flat=True)) == [
        f"sg{today}",
        f"sg{today}-2",
        f"sg{today}e",
    ]


def test_generate_command_refuses_a_domain_that_is_not_hosted(people):
    with pytest.raises(CommandError, match="partner.org is not a hosted domain"):
        call_command("dkim", "generate", "partner.org")
    assert not DkimKey.objects.exists()


def test_key_becomes_active_only_when_the_published_record_matches(people, zone):
    key = generate_key(people.domain)
    assert not check_dns(key, zone.resolver())
    assert key.state == DkimKey.State.WAITING and "No TXT record" in key.check_result

    other = generate_key(people.domain)
    zone.publish(key, other.record_text)  # someone pasted the wrong key
    assert not check_dns(key, zone.resolver())
    assert key.state == DkimKey.State.WAITING and "does not carry this key" in key.check_result

    zone.publish(key)
    assert check_dns(key, zone.resolver())
    key.refresh_from_db()
    assert key.state == DkimKey.State.ACTIVE and key.activated_at is not None


def test_check_command_activates_a_published_key(people, zone, monkeypatch):
    key = generate_key(people.domain, DkimKey.Algorithm.ED25519)
    zone.publish(key)
    monkeypatch.setattr(sendgate_dns, "default_resolver", zone.resolver)
    out = StringIO()
    call_command("dkim", "check", "example.com", stdout=out)
    key.refresh_from_db()
    assert key.state == DkimKey.State.ACTIVE
    assert f"{key.selector}: Active. The record at {key.record_name} matches this key." in (
        out.getvalue()
    )


# --- signatures on the domain path ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [DkimKey.Algorithm.RSA, DkimKey.Algorithm.ED25519])
def test_direct_mx_mail_arrives_with_a_signature_that_verifies(people, zone, mx, algorithm):
    key = active_key(people, zone, algorithm)
    message = send(people.user, zone)

    assert message.state == Message.State.SENT
    [got] = mx.messages
    tags = signature_tags(got.data)
    assert (tags["d"], tags["s"]) == ("example.com", key.selector)
    assert tags["a"] == {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}[algorithm]
    assert zone.verify(got.data)


def test_tampering_with_a_header_or_the_body_breaks_the_signature(people, zone, mx):
    active_key(people, zone)
    send(people.user, zone)
    [got] = mx.messages
    assert zone.verify(got.data)
    assert not zone.verify(got.data.replace(b"Subject: Hello", b"Subject: Hellp"))
    assert not zone.verify(got.data.replace(b"Body", b"B0dy"))


def test_a_waiting_key_signs_nothing(people, zone, mx):
    generate_key(people.domain)
    send(people.user, zone)
    [got] = mx.messages
    assert b"DKIM-Signature" not in got.data


def test_rsa_and_ed25519_keys_both_sign_and_both_verify(people, zone, mx):
    rsa = active_key(people, zone, DkimKey.Algorithm.RSA)
    ed = active_key(people, zone, DkimKey.Algorithm.ED25519)
    send(people.user, zone)
    [got] = mx.messages
    assert {signature_tags(got.data, i)["s"] for i in (0, 1)} == {rsa.selector, ed.selector}
    assert zone.verify(got.data, 0) and zone.verify(got.data, 1)


def test_domain_gateway_mail_is_signed_too(people, zone, smtp_peer, trust_test_ca):
    gateway = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    active_key(people, zone)
    send(people.user, zone)
    [got] = gateway.messages
    assert zone.verify(got.data)


@pytest.fixture
def partner_alias(people, smtp_peer, trust_test_ca):
    partner = smtp_peer("ann@partner.org", "partner-secret")
    SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    return partner


def test_alias_mail_on_the_domain_path_is_signed_for_the_sender_header_domain(
    people, zone, mx, partner_alias
):
    active_key(people, zone)
    send(people.user, zone, "ann@partner.org")  # the policy is off: the domain path
    [got] = mx.messages
    assert got.message["Sender"] == "ann@example.com"
    tags = signature_tags(got.data)
    assert tags["d"] == "example.com"
    assert "sender" in tags["h"].split(":")
    assert zone.verify(got.data)
    assert not zone.verify(got.data.replace(b"Sender: ann@example.com", b"Sender: eve@example.com"))


def test_per_user_gateway_mail_carries_no_sendgate_signature(people, zone, mx, partner_alias):
    active_key(people, zone)
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk)
    people.user.refresh_from_db()
    send(people.user, zone, "ann@partner.org")
    [got] = partner_alias.messages
    assert mx.messages == []
    assert b"DKIM-Signature" not in got.data


# --- rotation ------------------------------------------------------------------------------------


def test_rotation_switches_after_the_new_record_is_checked_and_keeps_the_old_one_a_week(
    people, zone, mx
):
    old = active_key(people, zone)
    new = generate_key(people.domain)
    send(people.user, zone)
    assert signature_tags(mx.messages[-1].data)["s"] == old.selector  # not switched yet

    zone.publish(new)
    check_dns(new, zone.resolver())
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.state == DkimKey.State.ACTIVE and old.state == DkimKey.State.RETIRING
    assert abs(old.retire_after - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert not old.may_be_deleted

    send(people.user, zone)
    assert signature_tags(mx.messages[-1].data)["s"] == new.selector
    assert zone.verify(mx.messages[-1].data)
    assert zone.verify(mx.messages[0].data)  # mail signed before the switch still verifies

    DkimKey.objects.filter(pk=old.pk).update(retire_after=timezone.now() - timedelta(seconds=1))
    old.refresh_from_db()
    assert old.may_be_deleted


# --- the console ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


def test_admin_generates_publishes_checks_and_sees_active(people, zone, admin_client, monkeypatch):
    url = reverse("dkim_keys", args=[people.domain.pk])
    response = admin_client.post(url, {"algorithm": "rsa"})
    assert response.status_code == 302
    key = DkimKey.objects.get(domain=people.domain)
    page = admin_client.get(url).content.decode()
    assert key.record_name in page and key.record_text in page and "Waiting for DNS" in page
    assert "PRIVATE KEY" not in page and key.private_key not in page

    monkeypatch.setattr(sendgate_dns, "default_resolver", zone.resolver)
    check = reverse("dkim_key_check", args=[people.domain.pk, key.pk])
    page = admin_client.post(check, follow=True).content.decode()
    assert "No TXT record" in page
    zone.publish(key)
    page = admin_client.post(check, follow=True).content.decode()
    assert "mail is now signed with it" in page and "Signing is on." in page


def test_an_unknown_algorithm_is_refused_and_nothing_is_created(people, admin_client):
    url = reverse("dkim_keys", args=[people.domain.pk])
    response = admin_client.post(url, {"algorithm": "dsa"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not DkimKey.objects.exists()


def test_an_active_key_cannot_be_deleted(people, zone, admin_client):
    key = active_key(people, zone)
    url = reverse("dkim_key_delete", args=[people.domain.pk, key.pk])
    page = admin_client.post(url, follow=True).content.decode()
    assert "still signs mail" in page
    assert DkimKey.objects.filter(pk=key.pk).exists()


def test_a_waiting_key_can_be_deleted(people, admin_client):
    key = generate_key(people.domain)
    url = reverse("dkim_key_delete", args=[people.domain.pk, key.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url)
    assert not DkimKey.objects.filter(pk=key.pk).exists()


def test_admin_of_another_domain_cannot_reach_this_domains_key_through_their_own(people, client):
    key = generate_key(people.domain)
    people.outsider.administered_domains.add(people.outsider.domain)
    assert client.login(username=people.outsider.email, password=PASSWORD)
    own = people.outsider.domain.pk
    assert client.get(reverse("dkim_keys", args=[own])).status_code == 200
    assert client.post(reverse("dkim_key_check", args=[own, key.pk])).status_code == 404
    assert client.post(reverse("dkim_key_delete", args=[own, key.pk])).status_code == 404
    assert client.get(reverse("dkim_keys", args=[people.domain.pk])).status_code == 404
    assert DkimKey.objects.filter(pk=key.pk, checked_at=None).exists()


# --- an independent verifier: OpenDKIM ------------------------------------------------------------

OPENDKIM = Path("/usr/sbin/opendkim")


def opendkim_results(data: bytes, zone: Zone, tmp_path: Path) -> str:
    """The Authentication-Results OpenDKIM (Debian's `opendkim`, test mode) stamps on ``data``,
    with the public keys read from the records published in ``zone``."""
    keys = tmp_path / "published-keys"
    keys.write_text(
        "".join(
            f"{name} {sendgate_dns.txt_records(name, zone.resolver()).values[0]}\n"
            for name, rdtype in zone.table
            if rdtype == "TXT"
        )
    )
    config = tmp_path / "opendkim.conf"
    config.write_text(f"Mode v\nSyslog no\nTestPublicKeys {keys}\n")
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    run = subprocess.run(
        [str(OPENDKIM), "-x", str(config), "-t", str(message), "-vv"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Test mode prints the header it would insert on stdout.
    stamped = re.search(r"hname='Authentication-Results' hvalue='([^']*)'", run.stdout)
    assert stamped, run.stdout + run.stderr
    return stamped.group(1)


def test_console_key_to_dkim_pass_at_opendkim(
    people, zone, mx, admin_client, monkeypatch, tmp_path
):
    if not OPENDKIM.exists():
        missing("OpenDKIM is not installed (Debian package opendkim)")
    admin_client.post(reverse("dkim_keys", args=[people.domain.pk]), {"algorithm": "rsa"})
    key = DkimKey.objects.get(domain=people.domain)
    zone.publish(key)
    monkeypatch.setattr(sendgate_dns, "default_resolver", zone.resolver)
    admin_client.post(reverse("dkim_key_check", args=[people.domain.pk, key.pk]))
    page = admin_client.get(reverse("dkim_keys", args=[people.domain.pk])).content.decode()
    assert "Signing is on." in page and "Active" in page

    send(people.user, zone)
    [got] = mx.messages
    results = opendkim_results(got.data, zone, tmp_path)
    assert "dkim=pass (2048-bit key) header.d=example.com" in results
    assert f"header.s={key.selector}" in results
    tampered = got.data.replace(b"Body", b"B0dy")
    assert "dkim=fail" in opendkim_results(tampered, zone, tmp_path)


def test_ed25519_signature_passes_at_opendkim(people, zone, mx, tmp_path):
    if not OPENDKIM.exists():
        missing("OpenDKIM is not installed (Debian package opendkim)")
    key = active_key(people, zone, DkimKey.Algorithm.ED25519)
    send(people.user, zone)
    [got] = mx.messages
    results = opendkim_results(got.data, zone, tmp_path)
    assert "dkim=pass header.d=example.com" in results and "header.a=ed25519-sha256" in results
    assert f"header.s={key.selector}" in results


def test_beat_activates_waiting_keys_whose_record_appeared(people, zone, monkeypatch, settings):
    from domainkeys.tasks import check_dkim_keys

    assert "domainkeys.tasks.check_dkim_keys" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    published, unpublished = generate_key(people.domain), generate_key(people.domain)
    zone.publish(published)
    monkeypatch.setattr(sendgate_dns, "default_resolver", zone.resolver)
    check_dkim_keys()
    published.refresh_from_db()
    unpublished.refresh_from_db()
    assert published.state == DkimKey.State.ACTIVE and published.published is True
    assert unpublished.state == DkimKey.State.WAITING and "No TXT record" in (
        unpublished.check_result
    )


def test_beat_rechecks_active_keys_daily_and_the_page_warns_when_the_record_vanished(
    people, zone, monkeypatch, admin_client
):
    from domainkeys.tasks import check_dkim_keys

    key = active_key(people, zone)
    del zone.table[(key.record_name, "TXT")]  # someone cleaned up the zone by mistake
    monkeypatch.setattr(sendgate_dns, "default_resolver", zone.resolver)
    check_dkim_keys()
    key.refresh_from_db()
    assert key.published is True  # checked minutes ago: not due yet

    DkimKey.objects.filter(pk=key.pk).update(checked_at=timezone.now() - timedelta(hours=25))
    check_dkim_keys()
    key.refresh_from_db()
    assert key.published is False and key.state == DkimKey.State.ACTIVE
    page = admin_client.get(reverse("dkim_keys", args=[people.domain.pk])).content.decode()
    assert "record missing or changed: signatures cannot be verified" in page

    zone.publish(key)
    admin_client.post(reverse("dkim_key_check", args=[people.domain.pk, key.pk]))
    page = admin_client.get(reverse("dkim_keys", args=[people.domain.pk])).content.decode()
    assert "record missing or changed" not in page


def test_the_domain_list_says_which_domains_sign(people, zone, admin_client):
    row = re.compile(r'<td class="dkim">(.*?)</td>', re.S)
    page = admin_client.get(reverse("domain_list")).content.decode()
    assert "Not signing" in row.search(page).group(1)
    active_key(people, zone)
    page = admin_client.get(reverse("domain_list")).content.decode()
    assert "Signing" in row.search(page).group(1) and "Not signing" not in page
