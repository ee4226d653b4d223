"""Console lists at scale: every row reachable page by page, counts capped, no N+1 queries."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from directory.models import Account, OrgUnit
from outbox.models import Message
from outbox.queue import queue
from policy.models import OutboundPolicy, PolicyChange

from .conftest import PASSWORD


def add_messages(account, n: int, *, same_time: bool = False, state: str = "sent") -> None:
    """``n`` messages, one a minute back from now (or all at one instant: keys that tie)."""
    now = timezone.now()
    Message.objects.bulk_create(
        Message(
            account=account,
            domain_id=account.domain_id,
            from_address=account.email,
            recipients=["b@x.test"],
            subject=f"m{i:04d}",
            message_id=f"<m{i}@x>",
            raw=b"x",
            state=state,
            created_at=now if same_time else now - timedelta(minutes=i),
        )
        for i in range(n)
    )


def add_changes(people, n: int) -> None:
    policy, _ = OutboundPolicy.objects.get_or_create(domain=people.domain)
    start = PolicyChange.objects.filter(domain=people.domain).count()
    PolicyChange.objects.bulk_create(
        PolicyChange(
            domain=people.domain,
            org_unit=people.domain.root_unit,
            actor=people.admin,
            actor_label=people.admin.email,
            scope_label=f"change{start + i:04d}",
            old_setting="deny",
            new_setting="allow",
            version=start + i + 1,
            finished_at=timezone.now(),
        )
        for i in range(n)
    )


def add_units(people, n: int) -> None:
    root = people.domain.root_unit
    start = OrgUnit.objects.filter(domain=people.domain).count()
    OrgUnit.objects.bulk_create(
        OrgUnit(domain=people.domain, parent=root, name=f"OU{start + i:04d}") for i in range(n)
    )


def add_accounts(unit: OrgUnit, n: int) -> None:
    start = Account.objects.filter(org_unit=unit).count()
    Account.objects.bulk_create(
        Account(
            email=f"member{start + i:04d}@example.com",
            domain=unit.domain,
            org_unit=unit,
            password="!",
        )
        for i in range(n)
    )


def links(html: str) -> dict[str, str]:
    """The pager's links by rel (first, prev, next, last)."""
    return {
        rel: unescape(href)
        for href, rel in re.findall(r'<a href="([^"]*)" rel="(first|prev|next|last)"', html)
    }


def subjects(html: str) -> list[str]:
    return re.findall(r"<td>(m\d{4})</td>", html)


@pytest.fixture
def ann(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    return people.user


@pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "all-at-once"])
def test_sent_mail_pages_reach_every_message_once_forwards_and_backwards(client, ann, same_time):
    add_messages(ann, 123, same_time=same_time)
    url = reverse("sent_list")
    expected = list(
        Message.objects.for_sender(ann)
        .order_by("-created_at", "-id")
        .values_list("subject", flat=True)
    )

    seen, page = [], client.get(url).content.decode()
    assert "123 messages." in page
    assert "prev" not in links(page) and "first" not in links(page)
    while True:
        seen += subjects(page)
        if "next" not in links(page):
            break
        page = client.get(url + links(page)["next"]).content.decode()
    assert seen == expected  # all 123, in order, none twice

    # The last page straight away, then back towards the newest.
    page = client.get(url + links(client.get(url).content.decode())["last"]).content.decode()
    assert subjects(page) == expected[-50:]
    assert "next" not in links(page) and "last" not in links(page)
    back = []
    while "prev" in links(page):
        back = subjects(page) + back
        page = client.get(url + links(page)["prev"]).content.decode()
    assert subjects(page) + back == expected


def test_a_cursor_that_does_not_parse_shows_the_first_page(client, ann):
    add_messages(ann, 60)
    first = subjects(client.get(reverse("sent_list")).content.decode())
    for cursor in ("garbage", "W10", "WyJub3QgYSBkYXRlIiwxXQ", "e30"):
        page = client.get(reverse("sent_list"), {"after": cursor}).content.decode()
        assert subjects(page) == first, cursor


def test_sent_mail_shows_only_the_senders_own_messages(client, ann, people):
    add_messages(people.admin, 5)
    add_messages(ann, 3)
    page = client.get(reverse("sent_list")).content.decode()
    assert "3 messages." in page and len(subjects(page)) == 3


def test_queue_files_the_message_under_its_senders_domain(people):
    message = queue(people.user, people.user.email, ["b@x.test"], "s", "<q@x>", b"x")
    assert message.domain == people.domain
    other = queue(people.outsider, people.outsider.email, ["b@x.test"], "s", "<o@x>", b"x")
    assert other.domain == people.outsider.domain
    assert list(Message.objects.for_domain(people.domain)) == [message]


def test_counts_past_the_cap_say_more_than(client, people, monkeypatch):
    monkeypatch.setattr("mailkit.paging.COUNT_CAP", 5)
    add_messages(people.user, 7)
    add_messages(people.user, 6, state="deferred")
    assert client.login(username=people.admin.email, password=PASSWORD)
    page = client.get(reverse("delivery_log", args=[people.domain.pk])).content.decode()
    assert "More than 5 messages match." in page
    counters = client.get(reverse("delivery_counters", args=[people.domain.pk])).content.decode()
    assert 'data-counter="deferred" title="more than 5">5+<' in counters
    assert 'data-counter="queued">0<' in counters


def test_counters_count_finished_mail_of_the_last_day_and_live_mail_of_any_age(client, people):
    old = timezone.now() - timedelta(days=3)
    add_messages(people.user, 4)
    Message.objects.update(created_at=old)
    add_messages(people.user, 3)  # sent a few minutes ago
    add_messages(people.user, 2, state="deferred")
    Message.objects.filter(state="deferred").update(created_at=old)
    assert client.login(username=people.admin.email, password=PASSWORD)
    counters = client.get(reverse("delivery_counters", args=[people.domain.pk])).content.decode()
    assert 'data-counter="sent">3<' in counters  # 7 sent, 4 of them three days ago
    assert 'data-counter="deferred">2<' in counters  # still to do, however old


def test_ou_members_page_by_address_to_the_last(client, people):
    unit = OrgUnit.objects.create(domain=people.domain, parent=people.domain.root_unit, name="Big")
    add_accounts(unit, 75)
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse("unit_detail", args=[people.domain.pk, unit.pk])
    page = client.get(url).content.decode()
    assert "75 accounts" in page and "member0000@" in page and "member0050@" not in page
    last = client.get(url + links(page)["last"]).content.decode()
    assert "member0074@" in last and "member0024@" not in last and "member0025@" in last


def test_audit_log_pages_back_to_the_first_change(client, people):
    add_changes(people, 130)
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse("audit_log", args=[people.domain.pk])
    page = client.get(url).content.decode()
    assert "130 changes." in page and "change0129" in page and "change0000" not in page
    oldest = client.get(url + links(page)["last"]).content.decode()
    assert "change0000" in oldest and "change0129" not in oldest


# --- query counts do not grow with the data ------------------------------------------------------


def warm(client) -> None:
    """A session's first request records the sign-in (more queries, once): get it done first."""
    client.get(reverse("home"))


def queries(client, url: str, params: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {}, headers={"HX-Request": "true"})
    assert response.status_code == 200, url
    return len(captured)


def grow(people, n: int) -> None:
    """n more messages, policy changes, OUs and OU members."""
    add_messages(people.user, n)
    add_messages(people.user, n, state="deferred")
    add_changes(people, n)
    add_units(people, n)
    add_accounts(people.domain.root_unit, n)


ADMIN_PAGES = [
    ("delivery_log", {}),
    ("delivery_log", {"state": "deferred"}),
    ("delivery_log", {"last": "1"}),
    ("delivery_log", {"route": "user_gateway", "account": "ann@"}),
    ("delivery_counters", {}),
    ("audit_log", {}),
    ("audit_log", {"last": "1"}),
    ("unit_list", {}),
    ("domain_policy", {}),
    ("unit_search", {"q": "OU"}),
]


@pytest.mark.parametrize("name,params", ADMIN_PAGES, ids=[f"{n}{p}" for n, p in ADMIN_PAGES])
def test_an_admin_pages_query_count_does_not_grow_with_the_data(client, people, name, params):
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse(name, args=[people.domain.pk])
    warm(client)
    grow(people, 10)
    small = queries(client, url, params)
    grow(people, 190)
    assert queries(client, url, params) == small


@pytest.mark.parametrize("view", ["unit_detail", "unit_branch", "policy_branch"])
def test_an_ou_pages_query_count_does_not_grow_with_the_data(client, people, view):
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse(view, args=[people.domain.pk, people.domain.root_unit.pk])
    warm(client)
    grow(people, 10)
    small = queries(client, url, {"open": "1"})
    grow(people, 190)
    assert queries(client, url, {"open": "1"}) == small


def test_sent_mail_query_count_does_not_grow_with_the_data(client, ann, people):
    warm(client)
    grow(people, 10)
    small = queries(client, reverse("sent_list"))
    grow(people, 190)
    assert queries(client, reverse("sent_list")) == small


@pytest.mark.parametrize("looked_up", [100, 1], ids=["few-senders", "many-senders"])
def test_sender_filter_finds_the_same_mail_whether_few_or_many_senders_match(
    client, people, monkeypatch, looked_up
):
    monkeypatch.setattr("outbound.admin_views.SENDERS_LOOKED_UP", looked_up)
    add_messages(people.user, 3)
    add_messages(people.admin, 2)
    add_messages(people.outsider, 4)
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse("delivery_log", args=[people.domain.pk])
    everyone = client.get(url, {"account": "@EXAMPLE.com"}).content.decode()
    assert "5 messages match." in everyone and "zoe@other.example" not in everyone
    ann = client.get(url, {"account": "ann@"}).content.decode()
    assert "3 messages match." in ann and "admin@example.com</td>" not in ann
    nobody = client.get(url, {"account": "nobody@"}).content.decode()
    assert "0 messages match." in nobody and "No messages match." in nobody


@pytest.mark.parametrize(
    "page,branch", [("unit_list", "unit_branch"), ("domain_policy", "policy_branch")]
)
def test_a_branch_with_many_sub_ous_shows_a_hundred_then_the_rest_on_demand(
    client, people, page, branch
):
    add_units(people, 105)
    assert client.login(username=people.admin.email, password=PASSWORD)
    html = client.get(reverse(page, args=[people.domain.pk])).content.decode()
    assert html.count('class="unit-line"') == 101  # the root and its first 100 sub-OUs
    # add_units numbers on from the root: OU0001 … OU0105.
    assert 'data-unit="OU0100"' in html and 'data-unit="OU0101"' not in html
    assert "Show 5 more sub-OUs" in html
    more = unescape(re.search(r'hx-get="([^"]*after=\d+)"', html).group(1))
    assert more.startswith(reverse(branch, args=[people.domain.pk, people.domain.root_unit.pk]))
    rest = client.get(more, headers={"HX-Request": "true"}).content.decode()
    names = re.findall(r'data-unit="(OU\d+)"', rest)
    assert names == [f"OU{n:04d}" for n in range(101, 106)]
    assert "more sub-OU" not in rest


def test_an_operator_pages_through_every_domain_by_name(client, people):
    from directory.models import Domain

    Domain.objects.bulk_create(Domain(name=f"d{n:03d}.test") for n in range(60))
    operator = Account.objects.create_superuser("op@example.com", PASSWORD)
    assert client.login(username=operator.email, password=PASSWORD)
    url = reverse("domain_list")
    first = client.get(url).content.decode()
    assert "d000.test" in first and "d049.test" in first and "d050.test" not in first
    last = client.get(url + links(first)["last"]).content.decode()
    # The last 50 of 62 by name: d012 … d059, example.com, other.example.
    assert "other.example" in last and "example.com</a>" in last
    assert "d012.test" in last and "d011.test" not in last


def test_a_branch_or_policy_form_opened_as_a_page_shows_the_tree_at_that_ou(client, people):
    unit = OrgUnit.objects.create(domain=people.domain, parent=people.domain.root_unit, name="S")
    assert client.login(username=people.admin.email, password=PASSWORD)
    d = people.domain.pk
    for view, page in (
        ("unit_branch", "unit_list"),
        ("policy_branch", "domain_policy"),
        ("unit_policy", "domain_policy"),
    ):
        response = client.get(reverse(view, args=[d, unit.pk]), {"open": "1"})
        assert response.status_code == 302
        assert response["Location"] == f"{reverse(page, args=[d])}?open={unit.pk}"
