"""Busy states: every form that posts says it is on its way, and cannot be submitted twice."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT
from .test_browser import log_in

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - chromium_page (conftest) skips without playwright
    expect = None

POST_FORM = re.compile(r"<form\b[^>]*\bmethod=\"post\"[^>]*>", re.IGNORECASE)
# The header's two forms, on every page: signing out and switching the language wait for nothing.
INSTANT = ("{% url 'logout' %}", "{% url 'set_language' %}")


def test_every_form_that_posts_has_a_busy_state():
    missing = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        for tag in POST_FORM.findall(template.read_text(encoding="utf-8")):
            if "data-busy=" not in tag and not any(url in tag for url in INSTANT):
                missing.append(f"{template.relative_to(ROOT)}: {tag}")
    assert not missing, "add data-busy (the text shown while it waits) to:\n" + "\n".join(missing)


@pytest.mark.browser
def test_a_waiting_action_shows_its_busy_text_and_refuses_a_second_submission(
    request, live_server, people
):
    page = request.getfixturevalue("chromium_page")
    log_in(page, live_server.url, people.admin.email)
    account_page = f"{live_server.url}/domains/{people.domain.pk}/accounts/{people.user.pk}/"
    page.goto(account_page)
    # The server "takes forever": a listener after the console's own counts each submission that
    # would leave, and keeps it here (Playwright cannot inspect a page whose navigation is held).
    page.evaluate(
        """() => { window.submitted = 0; document.addEventListener("submit", (event) => {
             if (!event.defaultPrevented) window.submitted += 1; event.preventDefault(); }); }"""
    )
    form = page.locator("form", has=page.locator('button[value="reset"]'))

    form.get_by_role("button", name="Send a password reset link").click()

    expect(form.get_by_role("button", name="Sending…")).to_be_disabled()
    expect(form.get_by_role("button", name="Deactivate")).to_be_disabled()
    expect(form).to_have_attribute("aria-busy", "true")
    form.evaluate("(form) => form.requestSubmit()")  # a second try, as a double click would
    assert page.evaluate("() => window.submitted") == 1

    # For real now: the pressed button's own action arrives, though it is disabled meanwhile.
    page.goto(account_page)
    page.get_by_role("button", name="Send a password reset link").click()
    expect(
        page.get_by_text("A password reset link is on its way to ann@example.com.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Send a password reset link")).to_be_enabled()
