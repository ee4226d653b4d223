"""Domain admins' accounts: add and invite, deactivate with held mail, admin rights, moves, and
`manage.py account` with the same rules."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from directory.models import Account, AuditEvent, OrgUnit
from outbound.credentials import candidates, create_app_password, matching
from outbox.models import Message

from .conftest import PASSWORD
from .test_domains import mail_link, set_password_through_link


@pytest.fixture
def admin_client(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


def actions(account: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(target=account).order_by("id").values_list("action", flat=True)
    )


def test_admin_adds_an_account_who_sets_a_password_and_logs_in(admin_client, people, client):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    response = admin_client.post(
        reverse("account_add", args=[people.domain.pk]),
        {"email": "bob@example.com", "display_name": "Bob Builder", "unit": sales.pk},
        follow=True,
    )
    assert "an invitation to choose a password is on its way" in response.content.decode()
    bob = Account.objects.get(email="bob@example.com")
    assert bob.org_unit == sales and not bob.has_usable_password()
    invitation = Message.objects.get(recipients=["bob@example.com"])
    assert invitation.from_address == "MAILER-DAEMON@example.com"  # the domain's own path
    assert b"expires in 72 hours" in invitation.raw
    assert actions("bob@example.com") == ["account_added", "invitation_sent"]

    admin_client.logout()
    set_password_through_link(client, mail_link(invitation), "bob's own password 1")
    response = client.post(
        reverse("login"), {"username": "bob@example.com", "password": "bob's own password 1"}
    )
    assert response.status_code == 302
    assert "bob@example.com" in client.get(reverse("alias_list")).content.decode()


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("ANN@example.com", "ANN@example.com already has an account."),
        ("bob@other.example", "bob@other.example is not in example.com."),
        ("bob example.com", "is not a valid address"),
    ],
)
def test_add_account_errors_are_specific_and_create_nothing(admin_client, people, address, error):
    before = Account.objects.count()
    page = admin_client.post(
        reverse("account_add", args=[people.domain.pk]),
        {"email": address, "unit": people.domain.root_unit.pk},
    ).content.decode()
    assert error in page
    assert Account.objects.count() == before and not Message.objects.exists()


def test_resend_invitation_and_reset_link(admin_client, people):
    call_command("account", "add", "bob@example.com", stdout=io.StringIO())
    bob = Account.objects.get(email="bob@example.com")
    url = reverse("account_detail", args=[people.domain.pk, bob.pk])
    assert "Resend invitation" in admin_client.get(url).content.decode()
    admin_client.post(url, {"action": "resend"})
    assert Message.objects.filter(recipients=["bob@example.com"]).count() == 2

    ann_url = reverse("account_detail", args=[people.domain.pk, people.user.pk])
    page = admin_client.post(ann_url, {"action": "reset"}, follow=True).content.decode()
    assert "A password reset link is on its way to ann@example.com" in page
    reset = Message.objects.get(recipients=["ann@example.com"])
    assert b"Reset your Sendgate password" in reset.raw
    assert actions("ann@example.com") == ["password_reset_sent"]


def _queued(account, n=1) -> list[Message]:
    return [
        Message.objects.create(
            account=account,
            from_address=account.email,
            recipients=[f"r{i}@elsewhere.test"],
            subject=f"Report {i}",
            message_id=f"<{i}@x>",
            raw=b"Subject: r\r\n\r\nr",
        )
        for i in range(n)
    ]


def test_deactivation_refuses_logins_and_holds_mail_until_the_admin_decides(
    admin_client, people, client
):
    ann = people.user
    _plain_app, app_password = create_app_password(ann, "Laptop")
    first, second = _queued(ann, 2)
    ann_client = client.__class__()
    assert ann_client.login(username=ann.email, password=PASSWORD)

    url = reverse("account_detail", args=[people.domain.pk, ann.pk])
    admin_client.post(url, {"action": "deactivate"})

    assert not client.login(username=ann.email, password=PASSWORD)
    assert ann_client.get(reverse("alias_list")).status_code == 302  # the open session ends
    assert matching(app_password, candidates(ann.email)) is None
    assert set(Message.objects.values_list("state", flat=True)) == {"held"}

    page = admin_client.get(url).content.decode()
    assert "2 held messages" in page and "Report 0" in page and "Report 1" in page
    admin_client.post(url, {"action": "deliver_held"})
    assert set(Message.objects.values_list("state", flat=True)) == {"queued"}
    assert actions(ann.email) == ["account_deactivated", "held_mail_released"]

    # Mail queued again while deactivated (e.g. a second deactivation) can be discarded instead.
    admin_client.post(url, {"action": "reactivate"})
    admin_client.post(url, {"action": "deactivate"})
    admin_client.post(url, {"action": "discard_held"})
    first.refresh_from_db()
    assert first.state == "failed" and "Discarded by an administrator" in first.last_reply
    assert actions(ann.email)[-1] == "held_mail_discarded"

    admin_client.post(url, {"action": "reactivate"})
    assert client.login(username=ann.email, password=PASSWORD)
    assert matching(app_password, candidates(ann.email)) is not None


def test_admin_rights_are_audited_and_the_last_admin_stays(admin_client, people):
    admin_url = reverse("account_detail", args=[people.domain.pk, people.admin.pk])
    page = admin_client.post(admin_url, {"action": "revoke_admin"}, follow=True).content.decode()
    assert "admin@example.com is the last admin of example.com" in page
    assert people.domain.admins.filter(pk=people.admin.pk).exists()
    page = admin_client.post(admin_url, {"action": "deactivate"}, follow=True).content.decode()
    assert "You cannot deactivate your own account." in page

    ann_url = reverse("account_detail", args=[people.domain.pk, people.user.pk])
    admin_client.post(ann_url, {"action": "make_admin"})
    assert people.domain.admins.filter(pk=people.user.pk).exists()
    admin_client.post(admin_url, {"action": "revoke_admin"})  # now someone else is left
    assert not people.domain.admins.filter(pk=people.admin.pk).exists()
    assert actions(people.user.email) == ["admin_granted"]
    assert actions(people.admin.email) == ["admin_revoked"]


def test_account_moves_are_audited(admin_client, people):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    url = reverse("account_detail", args=[people.domain.pk, people.user.pk])
    admin_client.post(url, {"action": "move", "unit": sales.pk})
    event = AuditEvent.objects.get(action="account_moved")
    assert event.detail == "example.com → example.com/Sales"
    assert event.actor == people.admin


# --- manage.py account ---------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("account", *args, stdout=out)
    return out.getvalue()


def test_account_commands_share_the_rules_of_the_console(people):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")
    out = run("--actor", "admin@example.com", "add", "bob@example.com", "--unit", "Sales/EMEA")
    assert "Created bob@example.com in example.com/Sales/EMEA; invitation queued." in out

    with pytest.raises(CommandError, match="BOB@example.com already has an account."):
        run("add", "BOB@example.com")
    with pytest.raises(CommandError, match="example.com has no OU Sales/APAC."):
        run("add", "carol@example.com", "--unit", "Sales/APAC")
    with pytest.raises(CommandError, match="No domain nowhere.test is hosted here."):
        run("add", "x@nowhere.test")
    with pytest.raises(CommandError, match="zoe@other.example does not administer example.com"):
        run("--actor", "zoe@other.example", "add", "carol@example.com")

    assert "Moved bob@example.com to example.com/Sales." in run("move", "bob@example.com", "Sales")
    assert "is now an admin" in run("make-admin", "bob@example.com")
    assert "is no longer an admin" in run("make-admin", "bob@example.com", "--revoke")
    _queued(people.user)
    assert "1 queued messages are held" in run("deactivate", "ann@example.com")
    assert not Account.objects.get(email="ann@example.com").is_active
    assert "Reactivated ann@example.com." in run("reactivate", "ann@example.com")
    with pytest.raises(CommandError, match="admin@example.com is the last admin"):
        run("make-admin", "admin@example.com", "--revoke")
    assert actions("bob@example.com") == [
        "account_added",
        "invitation_sent",
        "account_moved",
        "admin_granted",
        "admin_revoked",
    ]


def test_audit_log_page_lists_directory_changes(admin_client, people):
    url = reverse("account_detail", args=[people.domain.pk, people.user.pk])
    admin_client.post(url, {"action": "make_admin"})
    page = admin_client.get(reverse("audit_log", args=[people.domain.pk])).content.decode()
    assert re.search(
        r"<td>admin@example.com</td><td>Domain admin granted</td><td>ann@example.com</td>", page
    )
