"""The DKIM page in a real browser: generate a key, publish it, check DNS, see it sign."""

from __future__ import annotations

import pytest

from domainkeys.models import DkimKey
from mailkit import dns as sendgate_dns

from .fake_dns import FakeResolver, txt
from .test_browser import log_in

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - chromium_page skips first
    expect = None

pytestmark = pytest.mark.browser


def test_admin_generates_a_key_publishes_it_and_sees_signing_start_in_browser(
    chromium_page,
    live_server,
    people,
    monkeypatch,
    tmp_path,
):
    page, base = chromium_page, live_server.url
    published: dict = {}
    monkeypatch.setattr(sendgate_dns, "default_resolver", lambda: FakeResolver(dict(published)))

    log_in(page, base, people.admin.email)
    page.get_by_role("link", name="Domains and policy").click()
    page.get_by_role("link", name="DKIM signing").first.click()
    expect(page.locator("main")).to_contain_text("Mail is not signed yet.")
    page.get_by_role("button", name="Generate key").click()

    key = DkimKey.objects.get(domain=people.domain)
    row = page.locator(f"tr[data-selector='{key.selector}']")
    expect(row.locator(".state")).to_contain_text("Waiting for DNS")
    expect(row.locator("pre.record")).to_have_text(key.record_text)
    row.get_by_role("button", name="Check DNS").click()
    expect(page.locator(".flash")).to_contain_text("No TXT record")

    text = key.record_text  # what the admin pastes at the DNS provider
    published[(key.record_name, "TXT")] = [txt(text[:255], text[255:])]
    page.locator(f"tr[data-selector='{key.selector}']").get_by_role(
        "button", name="Check DNS"
    ).click()
    expect(page.locator(".flash")).to_contain_text("mail is now signed with it")
    expect(page.locator("main")).to_contain_text("Signing is on.")
    expect(page.locator(f"tr[data-selector='{key.selector}'] .state")).to_contain_text("Active")
    page.screenshot(path=str(tmp_path / "dkim-active.png"), full_page=True)
