"""The admin console's OU, policy-tree and audit pages, and their scoping."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from directory.models import Account, OrgUnit
from policy.models import PolicyChange, UnitOverride
from policy.propagation import propagate

from .conftest import PASSWORD


@pytest.fixture
def sales(people):
    return OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )


@pytest.fixture
def admin_client(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


def new_pages(people, unit) -> list[tuple[str, str, dict]]:
    d = people.domain.pk
    return [
        ("get", reverse("unit_list", args=[d]), {}),
        ("post", reverse("unit_list", args=[d]), {"name": "X", "parent": unit.pk}),
        ("get", reverse("unit_detail", args=[d, unit.pk]), {}),
        (
            "post",
            reverse("unit_detail", args=[d, unit.pk]),
            {"action": "rename", "rename-name": "Y"},
        ),
        ("get", reverse("unit_delete", args=[d, unit.pk]), {}),
        ("post", reverse("unit_delete", args=[d, unit.pk]), {}),
        ("post", reverse("unit_policy", args=[d, unit.pk]), {f"unit{unit.pk}-setting": "allow"}),
        ("get", reverse("audit_log", args=[d]), {}),
        ("get", reverse("unit_branch", args=[d, unit.pk]), {"open": "1"}),
        ("get", reverse("unit_search", args=[d]), {"q": "Sales"}),
        ("get", reverse("policy_branch", args=[d, unit.pk]), {"open": "1"}),
        ("get", reverse("unit_policy", args=[d, unit.pk]), {}),
    ]


@pytest.mark.parametrize("who", ["outsider_admin", "plain_user"])
def test_every_ou_and_audit_page_is_a_404_outside_the_admins_domain(client, people, sales, who):
    if who == "outsider_admin":
        people.outsider.administered_domains.add(people.outsider.domain)
        account = people.outsider
    else:
        account = people.user
    assert client.login(username=account.email, password=PASSWORD)
    for method, url, data in new_pages(people, sales):
        assert getattr(client, method)(url, data).status_code == 404, (who, method, url)
    sales.refresh_from_db()
    assert sales.name == "Sales"
    assert OrgUnit.objects.filter(domain=people.domain).count() == 2
    assert not PolicyChange.objects.exists() and not UnitOverride.objects.exists()


def test_an_admin_cannot_reach_another_domains_ou_through_their_own_domain(admin_client, people):
    other_root = people.outsider.org_unit
    url = reverse("unit_detail", args=[people.domain.pk, other_root.pk])
    assert admin_client.get(url).status_code == 404
    url = reverse("unit_policy", args=[people.domain.pk, other_root.pk])
    assert admin_client.post(url, {f"unit{other_root.pk}-setting": "allow"}).status_code == 404


def test_admin_creates_renames_moves_and_deletes_an_ou(admin_client, people, sales):
    d = people.domain.pk
    response = admin_client.post(
        reverse("unit_list", args=[d]), {"name": "EMEA", "parent": sales.pk}
    )
    assert response.status_code == 302
    emea = OrgUnit.objects.get(name="EMEA")
    assert emea.parent == sales
    # The tree comes back opened down to the new OU, which is on the page.
    tree = admin_client.get(response["Location"]).content.decode()
    assert 'data-unit="EMEA"' in tree and "EMEA created" in tree

    duplicate = admin_client.post(
        reverse("unit_list", args=[d]), {"name": "EMEA", "parent": sales.pk}
    )
    assert "already has an OU with this name" in duplicate.content.decode()

    admin_client.post(
        reverse("unit_detail", args=[d, emea.pk]), {"action": "rename", "rename-name": "Europe"}
    )
    emea.refresh_from_db()
    assert emea.name == "Europe"

    # Moving Sales under its own sub-OU is not offered, and refused if posted anyway.
    page = admin_client.get(reverse("unit_detail", args=[d, sales.pk])).content.decode()
    picker = page.split('id="id_move-parent"')[1].split("</div>")[0]
    assert f'"exclude": "{sales.pk}"' in picker and '"name": "move-parent"' in picker
    move_choices = admin_client.get(
        reverse("unit_search", args=[d]),
        {"q": "example", "name": "move-parent", "exclude": sales.pk},
    ).content.decode()
    assert 'name="move-parent"' in move_choices
    assert f'value="{people.domain.root_unit.pk}"> example.com</label>' in move_choices
    assert "example.com/Sales" not in move_choices
    cyclic = admin_client.post(
        reverse("unit_detail", args=[d, sales.pk]), {"action": "move", "move-parent": emea.pk}
    )
    assert cyclic.status_code == 200 and "Select a valid choice" in cyclic.content.decode()
    sales.refresh_from_db()
    assert sales.parent == people.domain.root_unit

    admin_client.post(
        reverse("unit_detail", args=[d, emea.pk]),
        {"action": "move", "move-parent": people.domain.root_unit.pk},
    )
    emea.refresh_from_db()
    assert emea.parent == people.domain.root_unit

    admin_client.post(reverse("unit_delete", args=[d, emea.pk]))
    assert not OrgUnit.objects.filter(pk=emea.pk).exists()


def test_an_ou_with_accounts_cannot_be_deleted(admin_client, people, sales):
    Account.objects.create_user("s@example.com", PASSWORD, org_unit=sales)
    response = admin_client.post(reverse("unit_delete", args=[people.domain.pk, sales.pk]))
    assert response.status_code == 302
    assert OrgUnit.objects.filter(pk=sales.pk).exists()
    page = admin_client.get(response["Location"]).content.decode()
    assert "Only an empty OU can be deleted" in page


def test_admin_moves_an_account_and_it_takes_the_ous_value(admin_client, people, sales):
    UnitOverride.objects.create(org_unit=sales, allow=True)
    response = admin_client.post(
        reverse("unit_detail", args=[people.domain.pk, sales.pk]),
        {"action": "move_account", "account-email": people.user.email, "account-unit": sales.pk},
    )
    assert response.status_code == 302
    people.user.refresh_from_db()
    assert people.user.org_unit == sales and people.user.gateways_allowed

    refused = admin_client.post(
        reverse("unit_detail", args=[people.domain.pk, sales.pk]),
        {
            "action": "move_account",
            "account-email": people.outsider.email,
            "account-unit": sales.pk,
        },
    )
    assert "No account zoe@other.example in example.com" in refused.content.decode()


def test_policy_page_shows_set_here_and_inherited_from(admin_client, people, sales):
    emea = OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")
    url = reverse("unit_policy", args=[people.domain.pk, sales.pk])
    assert admin_client.post(url, {f"unit{sales.pk}-setting": "allow"}).status_code == 302
    change = PolicyChange.objects.get()
    assert (change.scope_label, change.old_setting, change.new_setting) == (
        "example.com/Sales",
        "inherit",
        "allow",
    )
    propagate(change.pk)

    # After the save the tree is open down to Sales, showing its sub-OUs.
    page = admin_client.get(reverse("domain_policy", args=[people.domain.pk])).content.decode()
    assert 'data-unit="EMEA"' not in page  # closed: Sales' sub-OUs are not rendered
    page = admin_client.get(
        reverse("domain_policy", args=[people.domain.pk]), {"open": sales.pk}
    ).content.decode()
    sales_row = page.split('data-unit="Sales"')[1].split("</div>")[0]
    emea_row = page.split(f'data-unit="{emea.name}"')[1].split("</div>")[0]
    root_row = page.split('data-unit="example.com"')[1].split("</div>")[0]
    assert "Allowed" in sales_row and "set here" in sales_row
    assert "Allowed" in emea_row and "inherited from Sales" in emea_row
    assert "Not allowed" in root_row and "set here" in root_row


def test_every_save_is_in_the_audit_log_filterable_by_ou_and_admin(admin_client, people, sales):
    second_admin = Account.objects.create_user("boss@example.com", PASSWORD)
    people.domain.admins.add(second_admin)
    d = people.domain.pk
    admin_client.post(reverse("domain_policy", args=[d]), {"allow_user_gateways": "1"})
    admin_client.post(
        reverse("unit_policy", args=[d, sales.pk]), {f"unit{sales.pk}-setting": "deny"}
    )
    admin_client.post(
        reverse("unit_policy", args=[d, sales.pk]), {f"unit{sales.pk}-setting": "inherit"}
    )
    admin_client.logout()
    admin_client.login(username=second_admin.email, password=PASSWORD)
    admin_client.post(reverse("domain_policy", args=[d]), {"allow_user_gateways": "0"})

    assert list(
        PolicyChange.objects.order_by("version").values_list(
            "version", "scope_label", "old_setting", "new_setting", "actor_label"
        )
    ) == [
        (1, "example.com", "deny", "allow", "admin@example.com"),
        (2, "example.com/Sales", "inherit", "deny", "admin@example.com"),
        (3, "example.com/Sales", "deny", "inherit", "admin@example.com"),
        (4, "example.com", "allow", "deny", "boss@example.com"),
    ]
    audit = reverse("audit_log", args=[d])
    everything = admin_client.get(audit).content.decode()
    assert everything.count("<td>example.com/Sales</td>") == 2
    assert everything.count("<td>example.com</td>") == 2
    by_unit = admin_client.get(audit, {"unit": sales.pk}).content.decode()
    assert (
        by_unit.count("<td>example.com/Sales</td>") == 2 and "<td>example.com</td>" not in by_unit
    )
    by_boss = admin_client.get(audit, {"actor": second_admin.pk}).content.decode()
    assert "boss@example.com</td>" in by_boss and "<td>admin@example.com</td>" not in by_boss


def test_renaming_or_moving_an_ou_onto_a_siblings_name_says_so_and_changes_nothing(
    admin_client, people, sales
):
    d = people.domain.pk
    support = OrgUnit.objects.create(domain=people.domain, parent=sales.parent, name="Support")
    emea = OrgUnit.objects.create(domain=people.domain, parent=sales, name="Support")

    rename = admin_client.post(
        reverse("unit_detail", args=[d, support.pk]), {"action": "rename", "rename-name": "Sales"}
    )
    assert rename.status_code == 200
    assert "already has an OU with this name" in rename.content.decode()
    support.refresh_from_db()
    assert support.name == "Support"

    move = admin_client.post(
        reverse("unit_detail", args=[d, emea.pk]),
        {"action": "move", "move-parent": people.domain.root_unit.pk},
    )
    assert move.status_code == 200
    assert "already has an OU with this name" in move.content.decode()
    emea.refresh_from_db()
    assert emea.parent == sales


def test_ou_choices_list_the_tree_top_first(admin_client, people, sales):
    OrgUnit.objects.create(domain=people.domain, parent=sales, name="Alpha")
    # The picker lists what the search finds; with nothing typed yet (on focus), every OU.
    choices = admin_client.get(
        reverse("unit_search", args=[people.domain.pk]), {"q": "", "name": "parent"}
    ).content.decode()
    labels = re.findall(r'name="parent" value="\d+"> ([^<]+)</label>', choices)
    assert labels == ["example.com", "example.com/Sales", "example.com/Sales/Alpha"]
