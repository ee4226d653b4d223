"""axe-core on every main console page, at desktop and phone width: no serious or critical issue."""

from __future__ import annotations

import pytest

from gateways.models import SendAsAlias
from outbound.intake import accept_message

from .test_browser import log_in
from .test_layout import USER_PAGES, admin_pages

try:
    from axe_playwright_python.sync_playwright import Axe
except ImportError:  # pragma: no cover - a dev dependency
    Axe = None

WIDTHS = [{"width": 1280, "height": 800}, {"width": 390, "height": 844}]


def serious_violations(page) -> list[str]:
    results = Axe().run(page).response
    return [
        f"{v['id']} ({v['impact']}): {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.browser
@pytest.mark.parametrize("viewport", WIDTHS, ids=["1280px", "390px"])
def test_main_pages_have_no_serious_accessibility_violations(
    request, live_server, people, viewport
):
    if Axe is None:
        pytest.fail("axe-playwright-python is not installed (make install)")
    page = request.getfixturevalue("chromium_page")
    page.set_viewport_size(viewport)
    SendAsAlias.objects.create(
        account=people.admin, address="dana@partner.example", state=SendAsAlias.State.VERIFIED
    )
    accept_message(people.admin, people.admin.email, ["bob@elsewhere.test"], "Hello", "Body")
    found = {}
    page.goto(live_server.url + "/login/")
    found["/login/"] = serious_violations(page)
    log_in(page, live_server.url, people.admin.email)
    for path in [*admin_pages(people), *USER_PAGES]:
        page.goto(live_server.url + path)
        found[path] = serious_violations(page)
    assert {path: v for path, v in found.items() if v} == {}
