"""Propagation's batches: ranges of account ids that grow, skip gaps, and resume after a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from directory.models import Account, OrgUnit
from policy.models import PolicyChange, Setting
from policy.propagation import next_batch_size, propagate
from policy.service import move_account, set_domain_policy, set_unit_policy

from .conftest import People


class WorkerDied(Exception):
    """Stands for a worker killed in the middle of a batch."""


def add_accounts(people: People, count: int, unit: OrgUnit | None = None) -> None:
    """Accounts of example.com interleaved with other.example's, as years of sign-ups leave them."""
    unit = unit or people.domain.root_unit
    other = people.outsider.domain
    Account.objects.bulk_create(
        account
        for n in range(count)
        for account in (
            Account(
                email=f"{unit.name}{n}@example.com",
                domain=people.domain,
                org_unit=unit,
                password="!",
            ),
            Account(
                email=f"{unit.name}{n}@other.example",
                domain=other,
                org_unit=other.root_unit,
                password="!",
            ),
        )
    )


@contextmanager
def on_account_update(number: int, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` just before the ``number``-th UPDATE of accounts (1 is the first)."""
    seen = 0

    def wrapper(execute, sql, params, many, context):
        nonlocal seen
        if sql.startswith(f'UPDATE "{Account._meta.db_table}"'):
            seen += 1
            if seen == number:
                action()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def finished_event(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    [record] = [r for r in caplog.records if r.getMessage() == "policy.propagation_finished"]
    return record


def test_batches_grow_yet_reach_every_governed_account_and_no_other(people, caplog):
    legal = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Legal"
    )
    set_unit_policy(legal, Setting.DENY, people.admin)
    add_accounts(people, 40)
    add_accounts(people, 10, unit=legal)
    legal_version = Account.objects.filter(org_unit=legal).values("policy_version")[0]

    change = set_domain_policy(people.domain, True, people.admin)
    with caplog.at_level(logging.INFO, logger="sendgate.policy"):
        # Quick batches always double: 1, 2, 4, ... account ids.
        propagate(change.pk, batch_size=1, batch_seconds=3600)

    root = Account.objects.filter(org_unit=people.domain.root_unit)
    assert set(root.values_list("gateways_allowed", "policy_version")) == {(True, change.version)}
    assert set(
        Account.objects.filter(org_unit=legal).values_list("gateways_allowed", flat=True)
    ) == {False}
    assert Account.objects.filter(org_unit=legal).values("policy_version")[0] == legal_version
    assert not Account.objects.filter(domain__name="other.example", gateways_allowed=True).exists()
    change.refresh_from_db()
    assert change.finished_at and change.accounts_applied == change.accounts_total == 42
    # 42 accounts over about 100 ids: a handful of batches, not one per account.
    assert finished_event(caplog).batches <= 8


def test_batches_keep_their_size_without_a_time_target(people, caplog):
    add_accounts(people, 20)
    change = set_domain_policy(people.domain, True, people.admin)
    with caplog.at_level(logging.INFO, logger="sendgate.policy"):
        propagate(change.pk, batch_size=10, batch_seconds=0)

    assert not Account.objects.filter(domain=people.domain, gateways_allowed=False).exists()
    # 22 accounts over the ids of 42: at least 5 batches of 10 ids.
    assert finished_event(caplog).batches >= 5


def test_a_worker_that_dies_mid_batch_loses_that_batch_only_and_the_next_one_finishes(people):
    add_accounts(people, 30)
    change = set_domain_policy(people.domain, True, people.admin)

    def die() -> None:
        raise WorkerDied

    with on_account_update(3, die), pytest.raises(WorkerDied):
        propagate(change.pk, batch_size=8, batch_seconds=0)

    stopped = PolicyChange.objects.get(pk=change.pk)
    written = Account.objects.filter(domain=people.domain, gateways_allowed=True)
    # Two batches committed with their cursor and progress; the third left no trace.
    assert stopped.finished_at is None
    assert 0 < stopped.accounts_applied == written.count() < stopped.accounts_total
    assert set(written.values_list("pk", flat=True)) == set(
        Account.objects.filter(domain=people.domain, pk__lte=stopped.cursor_pk).values_list(
            "pk", flat=True
        )
    )

    # Beat hands it to another worker once the lease has run out.
    PolicyChange.objects.filter(pk=change.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    propagate(change.pk, batch_size=8, batch_seconds=0)

    change.refresh_from_db()
    assert change.finished_at and change.accounts_applied == change.accounts_total == 32
    assert not Account.objects.filter(domain=people.domain, gateways_allowed=False).exists()


def test_an_account_moved_while_propagation_runs_keeps_its_new_ous_value(people):
    legal = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Legal"
    )
    set_unit_policy(legal, Setting.DENY, people.admin)
    add_accounts(people, 30)
    change = set_domain_policy(people.domain, True, people.admin)
    last = Account.objects.filter(domain=people.domain).latest("pk")

    with on_account_update(2, lambda: move_account(last, legal, people.admin)):
        propagate(change.pk, batch_size=4, batch_seconds=0)

    last.refresh_from_db()
    assert last.org_unit == legal and not last.gateways_allowed
    assert not Account.objects.filter(
        org_unit=people.domain.root_unit, gateways_allowed=False
    ).exists()


def test_an_account_that_arrives_late_with_the_old_value_is_written_too(people):
    add_accounts(people, 10)
    change = set_domain_policy(people.domain, True, people.admin)

    def late_sign_up() -> None:
        # Created by a transaction that read the OU before the save and committed only now.
        Account.objects.create(
            email="late@example.com",
            domain=people.domain,
            org_unit=people.domain.root_unit,
            password="!",
            gateways_allowed=False,
            policy_version=change.version - 1,
        )

    with on_account_update(1, late_sign_up):
        propagate(change.pk, batch_size=4, batch_seconds=0)

    assert Account.objects.get(email="late@example.com").gateways_allowed


@pytest.mark.parametrize(
    ("size", "seconds", "target", "expected"),
    [
        (5000, 0.05, 0.2, 10000),  # well under the target: double
        (5000, 0.15, 0.2, 5000),  # about right: keep
        (40000, 0.5, 0.2, 20000),  # too slow: halve
        (5000, 0.5, 0.2, 5000),  # never below the first size
        (5000, 0.0, 0.0, 5000),  # no target: the first size throughout
    ],
)
def test_next_batch_size_aims_at_the_target_time(size, seconds, target, expected):
    assert next_batch_size(size, seconds, first=5000, target_seconds=target) == expected
