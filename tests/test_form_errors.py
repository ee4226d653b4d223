"""Form errors are summarised at the top of the form, and the focus goes there."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_accessibility import serious_violations
from .test_browser import log_in
from .test_layout import page_width


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_a_rejected_form_summarises_its_errors_at_the_top_and_takes_the_focus(
    request, live_server, people, width
):
    page = request.getfixturevalue("chromium_page")
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server.url, people.user.email)
    page.goto(f"{live_server.url}/compose/")
    page.fill("#id_to", "bob@elsewhere.test, not an address")
    page.fill("#id_subject", "Hello")
    page.get_by_role("button", name="Send").click()

    summary = page.locator("form .error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Please correct the following:")
    expect(summary.get_by_role("link")).to_contain_text("To: ")
    expect(summary.get_by_role("link")).to_contain_text("not an address")
    # The summary is the form's first child: above every field, where the eye lands.
    assert page.evaluate(
        "() => document.querySelector('form .error-summary') === "
        "document.querySelector('form .error-summary').parentElement.firstElementChild"
    )
    scroll_width, client_width = page_width(page)
    assert scroll_width <= client_width
    assert serious_violations(page) == []
    summary.get_by_role("link").click()
    expect(page.locator("#id_to")).to_be_focused()


@pytest.mark.browser
def test_a_form_without_errors_gets_no_summary_and_keeps_the_focus_where_it_was(
    request, live_server, people
):
    page = request.getfixturevalue("chromium_page")
    log_in(page, live_server.url, people.user.email)
    page.goto(f"{live_server.url}/compose/")
    expect(page.locator("#id_to")).to_be_visible()
    assert page.locator(".error-summary").count() == 0
    assert page.evaluate("() => document.activeElement === document.body")
