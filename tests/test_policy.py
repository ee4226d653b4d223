"""The domain policy: off by default, audited, propagated to every account, newest save wins."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from django.urls import reverse

from directory.models import Account
from policy.models import PolicyChange
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD


def test_per_user_gateways_are_off_by_default(people):
    assert not people.user.gateways_allowed
    assert not Account.objects.filter(gateways_allowed=True).exists()


def test_admin_saving_the_policy_records_who_changed_what_and_queues_propagation(
    client, people, django_capture_on_commit_callbacks
):
    client.login(username=people.admin.email, password=PASSWORD)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("domain_policy", args=[people.domain.pk]), {"allow_user_gateways": "1"}
        )
    assert response.status_code == 302
    change = PolicyChange.objects.get()
    assert (change.actor, change.old_setting, change.new_setting, change.version) == (
        people.admin,
        "deny",
        "allow",
        1,
    )
    assert change.accounts_total == 2  # admin and ann; the other domain is untouched
    assert len(callbacks) == 1  # the propagation task, sent only after commit

    page = client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    assert "Still propagating: applied to 0 of 2 accounts" in page
    assert 'hx-trigger="every 1s"' in page


def test_propagation_applies_to_every_account_of_the_domain_only(people):
    for n in range(12):
        Account.objects.create_user(f"user{n}@example.com", PASSWORD)
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk, batch_size=5)

    change.refresh_from_db()
    assert change.finished_at is not None
    assert change.accounts_applied == change.accounts_total == 14
    assert Account.objects.filter(domain=people.domain, gateways_allowed=False).count() == 0
    people.outsider.refresh_from_db()
    assert not people.outsider.gateways_allowed


def test_finished_progress_stops_polling(client, people):
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk)
    client.login(username=people.admin.email, password=PASSWORD)
    partial = client.get(reverse("propagation_progress", args=[people.domain.pk])).content.decode()
    assert "Applied to all 2 accounts" in partial
    assert "hx-trigger" not in partial


def test_the_progress_poll_also_refreshes_the_recent_changes_row_with_the_finished_count(
    client, people
):
    change = set_domain_policy(people.domain, True, people.admin)
    client.login(username=people.admin.email, password=PASSWORD)
    page = client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    assert "0 of 2" in page  # the row, before the worker ran

    propagate(change.pk)
    partial = client.get(reverse("propagation_progress", args=[people.domain.pk])).content.decode()
    # The last poll carries the table out of band: htmx swaps it in next to the progress line.
    table = partial[partial.index('id="recent-changes"') :]
    assert 'hx-swap-oob="true"' in table[:60]
    row = table[table.index(f'<tr data-change="{change.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "2 accounts" in row and "0 of 2" not in row
    assert "Not allowed → Allowed" in row


def test_one_account_reads_in_the_singular(client, people):
    people.user.delete()
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk)
    client.login(username=people.admin.email, password=PASSWORD)
    page = client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    assert "Applied to 1 account at" in page
    assert "1 accounts" not in page
    row = page[page.index(f'<tr data-change="{change.pk}"') :]
    assert "1 account<" in row[: row.index("</tr>")]


def test_policy_page_shows_times_with_the_time_zone(client, people, settings):
    settings.TIME_ZONE = "Europe/Amsterdam"
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk)
    client.login(username=people.admin.email, password=PASSWORD)
    page = client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    change.refresh_from_db()
    # One format, in the instance's zone, with the zone named: "2026-11-30 07:15 CET".
    shown = change.finished_at.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert f"Applied to all 2 accounts at {shown.strftime('%Y-%m-%d %H:%M %Z')}." in page
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d CES?T</td>", page)


def test_two_quick_saves_end_in_the_state_of_the_last_one(people):
    first = set_domain_policy(people.domain, True, people.admin)
    second = set_domain_policy(people.domain, False, people.admin)
    propagate(second.pk)
    propagate(first.pk)  # the older task arrives late: it must not undo the newer save

    first.refresh_from_db()
    assert first.superseded and first.finished_at is None
    assert not Account.objects.filter(domain=people.domain, gateways_allowed=True).exists()
    assert set(
        Account.objects.filter(domain=people.domain).values_list("policy_version", flat=True)
    ) == {2}


def test_a_propagation_interrupted_half_way_finishes_when_run_again(people):
    for n in range(10):
        Account.objects.create_user(f"user{n}@example.com", PASSWORD)
    change = set_domain_policy(people.domain, True, people.admin)
    # Half the accounts got the new value before the worker died.
    half = list(Account.objects.filter(domain=people.domain).order_by("pk")[:6])
    Account.objects.filter(pk__in=[a.pk for a in half]).update(
        gateways_allowed=True, policy_version=change.version
    )
    propagate(change.pk)
    assert Account.objects.filter(domain=people.domain, gateways_allowed=True).count() == 12


def test_saving_the_same_value_records_nothing(people):
    set_domain_policy(people.domain, True, people.admin)
    assert set_domain_policy(people.domain, True, people.admin) is None
    assert PolicyChange.objects.count() == 1


def test_new_account_is_born_with_the_current_policy(people):
    set_domain_policy(people.domain, True, people.admin)
    newcomer = Account.objects.create_user("new@example.com", PASSWORD)
    assert newcomer.gateways_allowed and newcomer.policy_version == 1


def test_beat_leaves_a_propagation_with_a_live_lease_to_its_worker(people):
    from datetime import timedelta

    from django.utils import timezone

    from policy.propagation import resumable_change_ids

    change = set_domain_policy(people.domain, True, people.admin)
    assert resumable_change_ids() == [change.pk]  # its task may have been lost: beat sends one

    PolicyChange.objects.filter(pk=change.pk).update(
        lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert resumable_change_ids() == []
    propagate(change.pk)  # a duplicate task while the lease is held does nothing
    assert not Account.objects.filter(gateways_allowed=True).exists()

    PolicyChange.objects.filter(pk=change.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert resumable_change_ids() == [change.pk]
    propagate(change.pk)
    change.refresh_from_db()
    assert change.finished_at and change.lease_until is None
