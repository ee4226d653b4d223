"""The console on a phone: at 390 px no page scrolls sideways and the navigation folds away."""

from __future__ import annotations

import pytest

from gateways.models import SendAsAlias
from outbound.intake import accept_message

from .test_browser import log_in

PHONE = {"width": 390, "height": 844}


def admin_pages(people) -> list[str]:
    pk = people.domain.pk
    root = people.domain.root_unit.pk
    return [
        "/domains/",
        f"/domains/{pk}/policy/",
        f"/domains/{pk}/units/",
        f"/domains/{pk}/units/{root}/",
        f"/domains/{pk}/delivery/",
        f"/domains/{pk}/audit/",
    ]


USER_PAGES = [
    "/settings/send-as/",
    "/compose/",
    "/sent/",
    "/settings/app-passwords/",
    "/settings/preferences/",
]


def page_width(page) -> tuple[int, int]:
    return page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )


@pytest.mark.browser
def test_no_console_page_scrolls_sideways_on_a_phone(request, live_server, people):
    page = request.getfixturevalue("chromium_page")
    SendAsAlias.objects.create(
        account=people.admin,
        address="dana.with.a.rather.long.name@partner-organisation.example",
        state=SendAsAlias.State.VERIFIED,
    )
    accept_message(
        people.admin,
        people.admin.email,
        ["someone.with.a.very.long.address.indeed@recipients-domain.example"],
        "A subject line that is long enough to need wrapping on a narrow screen",
        "Body",
    )
    page.set_viewport_size(PHONE)
    log_in(page, live_server.url, people.admin.email)
    for path in [*admin_pages(people), *USER_PAGES]:
        page.goto(live_server.url + path)
        scroll_width, client_width = page_width(page)
        assert scroll_width <= client_width, f"{path} is {scroll_width} px wide at 390 px"


@pytest.mark.browser
def test_the_navigation_folds_behind_a_menu_button_on_a_phone_only(request, live_server, people):
    page = request.getfixturevalue("chromium_page")
    log_in(page, live_server.url, people.user.email)
    page.goto(live_server.url + "/sent/")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.is_visible() and not page.get_by_text("Menu", exact=True).is_visible()
    assert nav.get_by_role("link", name="Sent mail").get_attribute("aria-current") == "page"

    page.set_viewport_size(PHONE)
    assert not nav.is_visible()
    page.get_by_text("Menu", exact=True).click()
    assert nav.is_visible()
    nav.get_by_role("link", name="Compose").click()
    page.wait_for_url("**/compose/")
    assert not page.get_by_role("navigation", name="Main").is_visible()  # folded again
