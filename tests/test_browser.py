"""The demo story in a real browser: Chromium through Playwright against the live server.

The admin switches per-user gateways on, Ann adds an alias with its own SMTP server (the
connection test and the confirmation mail go over real sockets), sends through it, then the admin
switches it off again and the same alias's mail goes through the domain gateway. Delivery and the
policy propagation run in a real Celery worker process.
"""

from __future__ import annotations

import re

import pytest

from .conftest import PASSWORD, SLOW, server_for, wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - chromium_page (conftest) skips without playwright
    expect = None

# --- steps of the story --------------------------------------------------------------------------


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .whoami")).to_contain_text(email)


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#id_username")).to_be_visible()


def expect_htmx_loaded(page) -> None:
    """The live status lines poll through htmx: its script must have been served and run."""
    page.wait_for_function("() => typeof window.htmx === 'object'")


WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def fits_the_width(page) -> None:
    """What a phone user notices first: the page must not scroll sideways."""
    scroll, client = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"{page.url} is {scroll} px wide in a {client} px window"


def set_gateway_policy(page, base: str, admin_email: str, on: bool) -> None:
    """As the domain admin: open example.com's policy page, save the setting, wait until applied."""
    log_in(page, base, admin_email)
    page.goto(f"{base}/domains/")
    page.get_by_role("link", name="example.com").click()
    expect(page.get_by_role("heading", name="Outbound policy of example.com")).to_be_visible()
    page.check(f'input[name="allow_user_gateways"][value="{"1" if on else "0"}"]')
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Saved.")
    expect_htmx_loaded(page)
    # The progress line polls with htmx until the worker has propagated the change.
    expect(page.locator("#progress")).to_contain_text("Applied to all", timeout=SLOW)
    fits_the_width(page)
    log_out(page)


def send_from_alias(page, base: str, subject: str, worker) -> str:
    """As Ann: compose from the alias, send, and wait on the detail page until it was sent."""
    page.goto(f"{base}/compose/")
    page.select_option("#id_from_address", "ann@partner.org")
    page.fill("#id_to", "bob@elsewhere.test")
    page.fill("#id_subject", subject)
    page.fill("#id_body", f"{subject}: sent from the browser test.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/sent/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("queued for delivery")
    expect_htmx_loaded(page)
    state = page.locator("[data-state]")
    try:
        # The status section re-fetches itself every second while queued or sending.
        expect(state).to_have_attribute("data-state", "sent", timeout=SLOW)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{worker.log.read_text()}") from None
    fits_the_width(page)
    return page.locator("[data-route]").get_attribute("data-route")


def messages_to(peer, address: str) -> list:
    return [m for m in peer.messages if address in m.rcpt_tos]


def body_of(received) -> str:
    return received.message.get_body(preferencelist=("plain",)).get_content()


# --- the story -----------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.parametrize("width", WIDTHS)
def test_admin_allows_gateways_and_user_alias_mail_goes_through_partner_server_in_browser(
    chromium_page, live_server, people, smtp_peer, trust_test_ca, celery_worker, tmp_path, width
):
    page = chromium_page
    page.set_viewport_size(WIDTHS[width])  # the same story on a desktop and on a phone
    base = live_server.url
    gateway = smtp_peer("relay@example.com", "relay-secret")
    partner = smtp_peer("ann@partner.org", "partner-secret")
    people.domain.outbound_gateway = server_for(gateway)
    people.domain.save()
    admin, ann = people.admin.email, people.user.email

    # 1. The admin switches per-user gateways on for example.com.
    set_gateway_policy(page, base, admin, on=True)

    # 2. Ann adds ann@partner.org with its own server; Sendgate tests the connection for real.
    log_in(page, base, ann)
    page.goto(f"{base}/settings/send-as/")
    page.fill("#id_display_name", "Ann Partner")
    page.fill("#id_address", "ann@partner.org")
    page.fill("#id_smtp_host", partner.host)
    page.fill("#id_smtp_port", str(partner.port))
    page.select_option("#id_smtp_security", "starttls")
    page.fill("#id_smtp_username", partner.login)
    # First a mistyped password: one precise sentence and the transcript, nothing saved.
    page.fill("#id_smtp_password", "mistyped")
    page.get_by_role("button", name="Add address").click()
    expect(page.locator(".errorlist")).to_contain_text("rejected the username or password")
    transcript = page.locator("details.transcript pre")
    expect(transcript).to_contain_text("C: STARTTLS")
    expect(transcript).to_contain_text("C: AUTH PLAIN (credentials hidden)")
    expect(transcript).not_to_contain_text("mistyped")
    fits_the_width(page)
    page.fill("#id_smtp_password", partner.password)  # write-only: never rendered back
    page.get_by_role("button", name="Add address").click()
    page.wait_for_url(re.compile(r"/settings/send-as/\d+/confirm/$"))
    expect(page.get_by_role("heading", name="Confirm ann@partner.org")).to_be_visible()
    fits_the_width(page)

    # Sendgate mails the code (null envelope sender, not from Ann), through the domain gateway.
    [confirmation] = wait_for(
        lambda: messages_to(gateway, "ann@partner.org"), what="the confirmation mail"
    )
    assert confirmation.mail_from == "<>"
    code = re.search(r"\b(\d{6})\b", body_of(confirmation)).group(1)
    assert partner.messages == []  # the connection test sent no message
    page.fill("#id_code", code)
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".flash")).to_contain_text("ann@partner.org is confirmed.")
    expect(page.get_by_role("cell", name="Verified")).to_be_visible()
    fits_the_width(page)

    # 3. Mail from the alias leaves through the partner's own server, without "on behalf of".
    route = send_from_alias(page, base, "Through my own server", celery_worker)
    page.screenshot(path=str(tmp_path / "sent-user-gateway.png"), full_page=True)
    assert route == "user_gateway"
    [got] = partner.messages
    assert got.mail_from == "ann@partner.org"
    assert got.rcpt_tos == ["bob@elsewhere.test"]
    assert got.login == "ann@partner.org"
    assert got.tls
    assert got.message["Sender"] is None
    assert got.message["Subject"] == "Through my own server"
    assert messages_to(gateway, "bob@elsewhere.test") == []
    log_out(page)

    # 4. The admin switches it off again.
    set_gateway_policy(page, base, admin, on=False)

    # 5. The same alias's mail now goes through the domain gateway with a Sender header.
    log_in(page, base, ann)
    page.goto(f"{base}/settings/send-as/")
    alias_row = page.get_by_role("row").filter(has_text="ann@partner.org")
    expect(alias_row).to_contain_text("disabled by your administrator")
    route = send_from_alias(page, base, "Through the domain gateway", celery_worker)
    page.screenshot(path=str(tmp_path / "sent-domain-gateway.png"), full_page=True)
    assert route == "domain_gateway"
    [relayed] = messages_to(gateway, "bob@elsewhere.test")
    assert relayed.mail_from == ann
    assert relayed.login == "relay@example.com" and relayed.tls
    assert relayed.message["Sender"] == ann
    assert "ann@partner.org" in relayed.message["From"]
    assert len(partner.messages) == 1

    # A picture of the send-as page for the README.
    page.goto(f"{base}/settings/send-as/")
    expect(alias_row).to_contain_text("disabled by your administrator")
    # docs/console-send-as.png in the README is a copy of this one, refreshed by hand.
    page.screenshot(path=str(tmp_path / "send-as-disabled.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.worker
def test_admin_overrides_one_ou_and_watches_the_propagation_reach_the_end(
    chromium_page, live_server, people, worker_factory
):
    from directory.models import Account, OrgUnit

    page = chromium_page
    base = live_server.url
    root = people.domain.root_unit
    sales = OrgUnit.objects.create(domain=people.domain, parent=root, name="Sales")
    OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")
    Account.objects.bulk_create(
        Account(email=f"s{n}@example.com", domain=people.domain, org_unit=sales, password="!")
        for n in range(400)
    )

    log_in(page, base, people.admin.email)
    page.goto(f"{base}/domains/")
    page.get_by_role("link", name="example.com").click()
    sales_row = page.locator('[data-unit="Sales"]')
    expect(sales_row).to_contain_text("inherited from example.com")
    expect(sales_row).to_contain_text("1 sub-OU")  # closed: its sub-OUs are not loaded yet
    expect_htmx_loaded(page)
    sales_row.get_by_role("button", name="Show its sub-OUs").click()
    expect(page.locator('[data-unit="EMEA"]')).to_contain_text("inherited from example.com")
    sales_row.get_by_role("button", name="Change").click()  # its form, loaded on demand
    sales_row.locator("select").select_option("allow")
    sales_row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Saved.")
    expect(sales_row).to_contain_text("set here")
    # Back on the tree, opened down to Sales.
    expect(page.locator('[data-unit="EMEA"]')).to_contain_text("inherited from Sales")
    expect(page.locator('[data-unit="EMEA"] .effective')).to_have_text("Allowed")
    expect(page.locator('[data-unit="example.com"] .effective')).to_have_text("Not allowed")

    # No worker yet: the page says honestly that nothing has been applied so far.
    progress = page.locator("#progress")
    expect(progress).to_contain_text("Still propagating: applied to 0 of 400 accounts")
    expect_htmx_loaded(page)

    # A worker starts; the progress line, polled by htmx, reaches the end without a reload.
    worker_factory(SENDGATE_POLICY_BATCH_SIZE="25")
    expect(progress).to_contain_text(
        re.compile(r"Applied to all 400 accounts at \d{4}-"), timeout=SLOW
    )
    expect(progress).not_to_have_attribute("hx-trigger", re.compile(".*"))  # polling stopped
    # The "Recent changes" row follows the same poll: it shows the finished count, not "0 of 400".
    expect(page.locator("#recent-changes tr[data-change] .propagation").first).to_have_text(
        "400 accounts"
    )
    assert set(
        Account.objects.filter(org_unit=sales).values_list("gateways_allowed", flat=True)
    ) == {True}

    page.get_by_role("link", name="Audit log").first.click()
    expect(page.locator("table.audit")).to_contain_text("example.com/Sales")
    expect(page.locator("table.audit")).to_contain_text("Inherit → Allowed")


@pytest.mark.browser
def test_admin_finds_an_ou_by_typing_part_of_its_path_and_creates_one_inside(
    chromium_page, live_server, people
):
    from directory.models import OrgUnit

    page = chromium_page
    base = live_server.url
    root = people.domain.root_unit
    sales = OrgUnit.objects.create(domain=people.domain, parent=root, name="Sales")
    OrgUnit.objects.create(domain=people.domain, parent=root, name="Support")

    log_in(page, base, people.admin.email)
    page.goto(f"{base}/domains/{people.domain.pk}/units/")
    expect_htmx_loaded(page)
    picker = page.get_by_label("Inside")
    expect(page.locator("#id_parent-choices")).to_contain_text("example.com")  # the default
    picker.fill("sal")
    choice = page.get_by_label("example.com/Sales")
    expect(choice).to_be_visible()
    expect(page.locator("#id_parent-choices")).not_to_contain_text("Support")
    choice.check()
    page.get_by_label("Name").fill("EMEA")
    page.get_by_role("button", name="Create OU").click()
    expect(page.locator(".flash")).to_contain_text("EMEA created")
    assert OrgUnit.objects.get(name="EMEA").parent == sales


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_renaming_an_ou_to_a_siblings_name_shows_why_on_desktop_and_phone(
    chromium_page, live_server, people, width
):
    from directory.models import OrgUnit

    page, base = chromium_page, live_server.url
    page.set_viewport_size(WIDTHS[width])
    root = people.domain.root_unit
    OrgUnit.objects.create(domain=people.domain, parent=root, name="Sales")
    support = OrgUnit.objects.create(domain=people.domain, parent=root, name="Support")
    log_in(page, base, people.admin.email)
    page.goto(f"{base}/domains/{people.domain.pk}/units/{support.pk}/")
    page.fill("#id_rename-name", "Sales")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator(".errorlist")).to_contain_text("already has an OU with this name")
    fits_the_width(page)
    support.refresh_from_db()
    assert support.name == "Support"
