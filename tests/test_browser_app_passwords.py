"""A new app password in the browser: shown once, copied with one click, gone after a reload."""

from __future__ import annotations

import pytest

from outbound.models import AppPassword

from .test_browser import WIDTHS, fits_the_width, log_in


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_copy_the_new_app_password_then_a_reload_neither_shows_nor_creates_one(
    request, live_server, people, width
):
    page = request.getfixturevalue("chromium_page")
    page.set_viewport_size(WIDTHS[width])
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, live_server.url, people.user.email)
    page.goto(live_server.url + "/settings/app-passwords/")
    page.fill("#id_name", "Laptop Thunderbird")
    page.get_by_role("button", name="Create").click()
    shown = page.locator("#new-app-password").inner_text().strip()
    assert len(shown.replace(" ", "")) >= 15

    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied.").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == shown
    fits_the_width(page)

    page.reload()
    assert page.locator("#new-app-password").count() == 0
    assert page.get_by_role("cell", name="Laptop Thunderbird").is_visible()
    assert AppPassword.objects.filter(account=people.user).count() == 1
