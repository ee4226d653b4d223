"""The accounts page: search, filters, keyset pages with a constant query count, bulk actions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from directory.models import Account, AuditEvent, OrgUnit

from .conftest import PASSWORD


@pytest.fixture
def admin_client(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


def add_accounts(people, count: int, unit=None, prefix: str = "user") -> None:
    unit = unit or people.domain.root_unit
    unusable = make_password(None)
    Account.objects.bulk_create(
        Account(
            email=f"{prefix}{i:05d}@example.com",
            display_name=f"Person {i}",
            domain=people.domain,
            org_unit=unit,
            password=unusable,
        )
        for i in range(count)
    )


def shown(page: str) -> list[str]:
    return re.findall(r'data-account="([^"]+)"', page)


def test_pages_by_address_forward_and_back(admin_client, people):
    add_accounts(people, 120)
    url = reverse("account_list", args=[people.domain.pk])
    first = admin_client.get(url).content.decode()
    rows = shown(first)
    assert len(rows) == 50 and rows == sorted(rows) and rows[0] == "admin@example.com"
    assert "Previous" not in first
    after = re.search(r'href="\?after=([^"]+)"', first).group(1)
    second = admin_client.get(f"{url}?after={after}").content.decode()
    assert shown(second)[0] > rows[-1] and len(shown(second)) == 50
    before = re.search(r'href="\?before=([^"]+)"', second).group(1)
    assert shown(admin_client.get(f"{url}?before={before}").content.decode()) == rows

    seen, page, pages = [], first, 0
    while True:
        seen += shown(page)
        pages += 1
        match = re.search(r'href="\?after=([^"]+)"', page)
        if not match:
            break
        page = admin_client.get(f"{url}?after={match.group(1)}").content.decode()
    assert pages == 3 and len(seen) == len(set(seen)) == 122  # 120 + admin + ann, none twice


def test_query_count_does_not_grow_with_the_number_of_accounts(admin_client, people):
    url = reverse("account_list", args=[people.domain.pk])
    add_accounts(people, 10)
    with CaptureQueriesContext(connection) as small:
        admin_client.get(url)
    add_accounts(people, 400, prefix="more")
    with CaptureQueriesContext(connection) as large:
        admin_client.get(url + "?q=person&state=active")
    assert len(large) <= len(small) + 1  # +1: the search form's OU choices are validated


def test_search_and_filters(admin_client, people):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    add_accounts(people, 3, unit=sales, prefix="seller")
    Account.objects.filter(email="seller00001@example.com").update(is_active=False)
    url = reverse("account_list", args=[people.domain.pk])
    assert shown(admin_client.get(url, {"q": "nobody"}).content.decode()) == []
    assert shown(admin_client.get(url, {"q": "ann exa"}).content.decode()) == ["ann@example.com"]
    assert shown(admin_client.get(url, {"q": "SELLER0000"}).content.decode()) == [
        "seller00000@example.com",
        "seller00001@example.com",
        "seller00002@example.com",
    ]
    assert len(shown(admin_client.get(url, {"unit": sales.pk}).content.decode())) == 3
    inactive = admin_client.get(url, {"state": "inactive"}).content.decode()
    assert shown(inactive) == ["seller00001@example.com"] and "deactivated" in inactive
    # Another domain's account is never listed, whatever the search.
    assert shown(admin_client.get(url, {"q": "zoe"}).content.decode()) == []


def test_bulk_move_deactivate_and_reactivate(admin_client, people):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    add_accounts(people, 3)
    ids = list(Account.objects.filter(email__startswith="user").values_list("pk", flat=True)) + [
        people.outsider.pk
    ]  # someone else's account is ignored
    url = reverse("account_list", args=[people.domain.pk])
    page = admin_client.get(url).content.decode()
    assert '"name": "unit"' in page  # the OU picker, which searches the domain's OUs:
    found = admin_client.get(
        reverse("unit_search", args=[people.domain.pk]), {"q": "Sales", "name": "unit"}
    ).content.decode()
    assert f'value="{sales.pk}"> example.com/Sales</label>' in found

    admin_client.post(url, {"accounts": ids, "action": "move", "unit": sales.pk})
    assert Account.objects.filter(org_unit=sales).count() == 3
    assert AuditEvent.objects.filter(action="account_moved").count() == 3

    page = admin_client.post(url, {"accounts": ids, "action": "deactivate"}, follow=True)
    assert "3 accounts changed." in page.content.decode()
    assert Account.objects.filter(is_active=False).count() == 3
    assert people.outsider.__class__.objects.get(pk=people.outsider.pk).is_active

    admin_client.post(url, {"accounts": ids, "action": "reactivate"})
    assert not Account.objects.filter(is_active=False).exists()

    page = admin_client.post(url, {"action": "deactivate"}, follow=True).content.decode()
    assert "Select at least one account." in page
