"""Onboarding in a real browser: an invitation to a first login, and a CSV import with preview."""

from __future__ import annotations

import pytest

from directory.models import Account, AccountImport, OrgUnit
from outbox.models import Message
from outbox.onboarding import send_import_invitations

from .test_browser import expect, log_in, log_out
from .test_domains import mail_link

pytestmark = pytest.mark.browser


def test_invited_user_sets_a_password_and_logs_in_for_the_first_time(
    chromium_page,
    live_server,
    people,
    settings,
):
    settings.SENDGATE_CONSOLE_URL = live_server.url
    page, base = chromium_page, live_server.url
    log_in(page, base, people.admin.email)
    page.goto(f"{base}/domains/{people.domain.pk}/accounts/")
    page.get_by_role("link", name="Add an account").click()
    page.fill("#id_email", "bob@example.com")
    page.fill("#id_display_name", "Bob Builder")
    page.get_by_role("button", name="Add and invite").click()
    expect(page.locator(".flash")).to_contain_text("an invitation to choose a password")
    expect(page.locator(".account-state")).to_contain_text("invited")
    log_out(page)

    invitation = Message.objects.get(recipients=["bob@example.com"])
    link = mail_link(invitation)
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.fill("#id_new_password1", "bob's first password 8")
    page.fill("#id_new_password2", "bob's first password 8")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator(".flash")).to_contain_text("Your password is set")

    page.fill("#id_username", "bob@example.com")
    page.fill("#id_password", "bob's first password 8")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .whoami")).to_contain_text("bob@example.com")
    assert Account.objects.get(email="bob@example.com").last_login is not None

    log_out(page)
    page.goto(link)  # a used link does not work again
    expect(page.locator(".flash.error")).to_contain_text("does not work any more")


def test_csv_import_shows_errors_then_a_preview_then_imports(
    chromium_page,
    live_server,
    people,
    tmp_path,
):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("carol@example.com,Carol,Sales\ndave@example.org,Dave,\n", encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text(
        "address,name,OU path\ncarol@example.com,Carol,Sales\ndave@example.com,Dave,\n",
        encoding="utf-8-sig",
    )
    page, base = chromium_page, live_server.url
    log_in(page, base, people.admin.email)
    page.goto(f"{base}/domains/{people.domain.pk}/accounts/")
    page.get_by_role("link", name="Import from CSV").click()

    page.set_input_files("#id_file", str(bad))
    page.get_by_role("button", name="Check the file").click()
    errors = page.locator(".errors-found")
    expect(errors).to_contain_text("1 problem: nothing was imported")
    expect(errors).to_contain_text("dave@example.org is not in example.com.")
    expect(errors.locator("td").first).to_have_text("2")
    assert not Account.objects.filter(email="carol@example.com").exists()

    page.set_input_files("#id_file", str(good))
    page.get_by_role("button", name="Check the file").click()
    preview = page.locator(".preview")
    expect(preview).to_contain_text("2 accounts are ready to import")
    expect(preview).to_contain_text("example.com/Sales")
    assert not Account.objects.filter(email="carol@example.com").exists()
    page.get_by_role("button", name="Import 2 accounts").click()

    expect(page.locator(".flash").first).to_contain_text("2 accounts imported.")
    invitations = page.locator(".imports .invitations").first
    expect(invitations).to_contain_text("sending: 0 of 2")
    send_import_invitations(AccountImport.objects.get().pk)  # what the worker does
    expect(invitations).to_contain_text("2 sent")  # the page polls for progress
    assert Message.objects.filter(recipients=["dave@example.com"]).exists()

    page.goto(f"{base}/domains/{people.domain.pk}/accounts/")
    expect(page.locator('tr[data-account="carol@example.com"]')).to_contain_text("Sales")
    assert Account.objects.get(email="carol@example.com").org_unit == sales
