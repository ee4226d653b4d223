"""Propagation in real Celery worker processes: OU scoping, a killed worker, routing end to end."""

from __future__ import annotations

import signal
import time

import pytest
from django.utils import timezone

from directory.models import Account, OrgUnit
from gateways.models import SendAsAlias
from outbound.intake import accept_message
from outbox.models import Message
from policy.models import PolicyChange, Setting
from policy.service import set_domain_policy, set_unit_policy
from policy.tasks import resume_propagation

from .conftest import server_for, wait_for

pytestmark = pytest.mark.worker


def add_accounts(domain, unit: OrgUnit, count: int, prefix: str) -> None:
    """Many accounts at once, as an import would create them (no per-row password hashing)."""
    Account.objects.bulk_create(
        Account(email=f"{prefix}{n}@{domain.name}", domain=domain, org_unit=unit, password="!")
        for n in range(count)
    )


def finished(change: PolicyChange) -> PolicyChange | None:
    return PolicyChange.objects.filter(pk=change.pk, finished_at__isnull=False).first()


def values(unit: OrgUnit) -> set[bool]:
    return set(Account.objects.filter(org_unit=unit).values_list("gateways_allowed", flat=True))


def test_worker_applies_a_root_change_but_not_to_a_sub_ou_that_overrides(people, worker_factory):
    root = people.domain.root_unit
    sales = OrgUnit.objects.create(domain=people.domain, parent=root, name="Sales")
    legal = OrgUnit.objects.create(domain=people.domain, parent=root, name="Legal")
    add_accounts(people.domain, sales, 300, "sales")
    add_accounts(people.domain, legal, 50, "legal")
    worker_factory(SENDGATE_POLICY_BATCH_SIZE="40")

    deny_legal = set_unit_policy(legal, Setting.DENY, people.admin)
    wait_for(lambda: finished(deny_legal), what="the Legal override to be applied")
    legal_versions = set(
        Account.objects.filter(org_unit=legal).values_list("policy_version", flat=True)
    )

    change = set_domain_policy(people.domain, True, people.admin)
    done = wait_for(lambda: finished(change), what="the root change to be applied")

    assert done.accounts_applied == done.accounts_total == 302  # sales + admin + ann
    assert values(sales) == values(root) == {True}
    assert values(legal) == {False}
    assert (
        set(Account.objects.filter(org_unit=legal).values_list("policy_version", flat=True))
        == legal_versions
    )  # untouched, not merely rewritten
    people.outsider.refresh_from_db()
    assert not people.outsider.gateways_allowed


def test_a_propagation_whose_worker_was_killed_is_resumed_by_beat(people, worker_factory, settings):
    add_accounts(people.domain, people.domain.root_unit, 3000, "bulk")
    # Small batches so the kill lands half-way; a short lease so beat may take over soon.
    env = {
        "SENDGATE_POLICY_BATCH_SIZE": "5",
        "SENDGATE_POLICY_BATCH_SECONDS": "0",  # batches that stay small
        "SENDGATE_POLICY_LEASE_SECONDS": "2",
    }
    first = worker_factory(**env)
    change = set_domain_policy(people.domain, True, people.admin)

    deadline = time.monotonic() + 60
    while PolicyChange.objects.get(pk=change.pk).accounts_applied == 0:
        assert time.monotonic() < deadline, first.log.read_text()
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()

    killed = PolicyChange.objects.get(pk=change.pk)
    assert killed.finished_at is None, "the propagation finished before the kill"
    assert 0 < killed.accounts_applied < killed.accounts_total == 3002
    assert Account.objects.filter(domain=people.domain, gateways_allowed=False).exists()

    worker_factory(**env)
    wait_for(lambda: killed.lease_until < timezone.now(), what="the dead worker's lease to run out")
    resume_propagation.delay()  # what beat sends every minute
    done = wait_for(lambda: finished(change), what="the resumed propagation to finish")

    assert done.accounts_applied == 3002
    assert not Account.objects.filter(domain=people.domain, gateways_allowed=False).exists()
    assert set(
        Account.objects.filter(domain=people.domain).values_list("policy_version", flat=True)
    ) == {change.version}


@pytest.fixture
def world(people, smtp_peer, trust_test_ca):
    """Ann in OU Sales with a verified alias whose own server is a real SMTP peer."""
    gateway = smtp_peer("relay@example.com", "relay-secret")
    partner = smtp_peer("ann@partner.org", "partner-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    Account.objects.filter(pk=people.user.pk).update(org_unit=sales)
    SendAsAlias.objects.create(
        account=people.user,
        address="ann@partner.org",
        state=SendAsAlias.State.VERIFIED,
        smtp_server=server_for(partner),
    )
    return people, sales, gateway, partner


def send_and_wait(people, subject: str) -> Message:
    message = accept_message(people.user, "ann@partner.org", ["bob@elsewhere.test"], subject, "B")
    return wait_for(
        lambda: Message.objects.filter(pk=message.pk, state=Message.State.SENT).first(),
        what=f"{subject!r} to be sent",
    )


def test_ou_policy_off_on_off_switches_the_route_of_alias_mail(world, celery_worker):
    people, sales, gateway, partner = world

    off = send_and_wait(people, "off")
    assert off.last_route == "domain_gateway"
    assert gateway.messages[-1].message["Sender"] == "ann@example.com"

    on = set_unit_policy(sales, Setting.ALLOW, people.admin)
    wait_for(lambda: finished(on), what="Sales: allow to be applied")
    sent = send_and_wait(people, "on")
    assert sent.last_route == "user_gateway"
    assert [m.message["Subject"] for m in partner.messages] == ["on"]
    assert partner.messages[0].mail_from == "ann@partner.org"
    assert partner.messages[0].message["Sender"] is None

    again_off = set_unit_policy(sales, Setting.INHERIT, people.admin)  # root says deny
    wait_for(lambda: finished(again_off), what="Sales: inherit to be applied")
    last = send_and_wait(people, "off again")
    assert last.last_route == "domain_gateway"
    assert last.attempts.get().policy_version == again_off.version
    assert len(partner.messages) == 1
    assert [m.message["Subject"] for m in gateway.messages] == ["off", "off again"]
    assert gateway.messages[-1].mail_from == "ann@example.com"
