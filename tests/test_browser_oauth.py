"""The sign-in round trip in a real browser: Ann connects her partner mailbox by signing in at a
local authorization server, and a real Celery worker sends her mail with AUTH XOAUTH2."""

from __future__ import annotations

import re

import pytest

from gateways.models import SendAsAlias
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import SLOW, csp_violations
from .test_browser import expect, log_in, send_from_alias

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_user_signs_in_with_the_provider_and_mail_goes_out_with_xoauth2(
    chromium_page,
    live_server,
    people,
    oauth_world,
    worker_factory,
    settings,
    tmp_path,
):
    settings.SENDGATE_CONSOLE_URL = live_server.url  # the redirect URI the provider returns to
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    worker = worker_factory(**oauth_world.env())
    # The test provider's certificate comes from the test CA, which this Chromium does not
    # know; Sendgate itself verifies it on every token call.
    context = chromium_page.context.browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(SLOW)
    page = context.new_page()
    # Like chromium_page's own page: the sign-in pages must pass the Content-Security-Policy too.
    violations = csp_violations(page)
    base = live_server.url

    log_in(page, base, people.user.email)
    page.goto(f"{base}/settings/send-as/")
    page.get_by_role("row").filter(has_text="ann@partner.org").get_by_role(
        "link", name="Edit"
    ).click()
    page.get_by_role("button", name="Sign in with Test Mail").click()

    # The provider's consent page, then back to Sendgate, which tests the server and saves it.
    page.wait_for_url(re.compile(re.escape(oauth_world.auth.url) + r"/authorize\?"))
    expect(page.get_by_text("Let Sendgate send mail as ann@partner.org?")).to_be_visible()
    page.get_by_role("link", name="Allow").click()
    page.wait_for_url(f"{base}/settings/send-as/")
    expect(page.locator(".flash")).to_contain_text(
        "ann@partner.org now sends through localhost, signed in with Test Mail."
    )
    row = page.get_by_role("row").filter(has_text="ann@partner.org")
    expect(row).to_contain_text("signed in with Test Mail")
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

    route = send_from_alias(page, base, "Signed in, no password", worker)
    assert route == "user_gateway"
    [got] = oauth_world.smtp.messages
    assert got.mail_from == "ann@partner.org" and got.login == "ann@partner.org" and got.tls
    assert [m for m, _user in oauth_world.smtp.attempts] == ["XOAUTH2", "XOAUTH2"]
    context.close()
    assert violations == [], "a sign-in page broke the console's Content-Security-Policy"
