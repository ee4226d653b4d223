"""`manage.py policy show|set`: scripted admin, audited like the console."""

from __future__ import annotations

import re
import shlex
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from demo.management.commands.seed_demo import Command as SeedDemo
from directory.models import Account, OrgUnit
from policy.models import PolicyChange

from .conftest import PASSWORD, ROOT


def run(*args) -> str:
    out = StringIO()
    call_command("policy", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def operator(people):
    return Account.objects.create_superuser("ops@other.example", PASSWORD)


def test_set_records_the_same_policy_change_as_the_console(people, operator):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")

    out = run("set", "example.com", "allow", "--unit", "Sales", "--actor", "ops@other.example")

    assert "example.com/Sales: inherit -> allow (version 1)" in out
    change = PolicyChange.objects.get()
    assert (change.actor, change.org_unit, change.new_setting) == (operator, sales, "allow")
    assert run("show", "example.com").splitlines()[:3] == [
        "example.com: deny (set here)",
        "  Sales: allow (set here)",
        "    EMEA: allow (inherited from Sales)",
    ]


def test_set_at_the_domain_root_and_a_domain_admin_as_actor(people):
    out = run("set", "example.com", "allow", "--actor", people.admin.email)
    assert "example.com: deny -> allow" in out
    assert "nothing changed" in run("set", "example.com", "allow", "--actor", people.admin.email)
    assert PolicyChange.objects.count() == 1


def test_set_refuses_an_actor_without_rights_on_the_domain(people):
    with pytest.raises(CommandError, match="neither an operator nor an admin"):
        run("set", "example.com", "allow", "--actor", people.user.email)
    with pytest.raises(CommandError, match="example.com has no OU Nowhere."):
        run("set", "example.com", "allow", "--unit", "Nowhere", "--actor", people.admin.email)
    with pytest.raises(CommandError, match="no parent to inherit"):
        run("set", "example.com", "inherit", "--actor", people.admin.email)
    assert not PolicyChange.objects.exists()


def test_actor_is_required(people):
    with pytest.raises(CommandError, match="--actor"):
        run("set", "example.com", "allow")


def test_the_readme_policy_example_works_on_the_demo_data(db):
    """The README's `manage.py policy set ...` line, run as written after `seed_demo`."""
    SeedDemo(stdout=StringIO()).handle()
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"`manage\.py (policy set [^`]+)`", readme).group(1)
    out = run(*shlex.split(example)[1:])
    assert "example.com/Sales/EMEA: inherit -> allow" in out
