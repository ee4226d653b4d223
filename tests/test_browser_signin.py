"""Signing in to the console in a real browser: two-step verification, recovery codes, lockout,
sign out everywhere (Chromium through Playwright against the live server)."""

from __future__ import annotations

import time
from base64 import b32decode

import pyotp
import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from .conftest import PASSWORD, SLOW
from .test_browser import log_in, log_out

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - chromium_page skips
    expect = None

pytestmark = pytest.mark.browser


def b32_to_hex(secret: str) -> str:
    return b32decode(secret).hex()


def submit_password(page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()


def enter_code(page, code: str) -> None:
    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    page.fill("#id_code", code)
    page.get_by_role("button", name="Verify").click()


def test_enrol_an_authenticator_then_sign_in_with_it_and_with_a_recovery_code(
    chromium_page, live_server, people
):
    page, base, ann = chromium_page, live_server.url, people.user.email

    # Enrol: the QR code is an inline SVG; the key under it is what the app would scan.
    log_in(page, base, ann)
    page.get_by_role("link", name="Sign-in and security").click()
    page.get_by_role("button", name="Set up two-step verification").click()
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    expect(qr).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth > 0", qr.element_handle())  # CSP let it load
    totp = pyotp.TOTP(page.locator("#totp-secret").inner_text().replace(" ", ""))
    page.fill("#id_code", totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator(".flash")).to_contain_text("Two-step verification is on.")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I have saved them").click()
    expect(page.locator("#two-step")).to_contain_text("You have 10 unused recovery codes.")
    log_out(page)

    # The password alone leads to the code step; the app's code signs in. (django-otp accepts a
    # time step once: the next step's code is within its tolerance.)
    submit_password(page, base, ann)
    expect(page.locator("header .whoami")).to_have_count(0)
    enter_code(page, totp.at(time.time() + 30))
    expect(page.locator("header .whoami")).to_contain_text(ann, timeout=SLOW)
    assert page.url == f"{base}/settings/send-as/"  # straight home, as after a password
    log_out(page)

    # A recovery code works once.
    submit_password(page, base, ann)
    enter_code(page, codes[0])
    expect(page.locator(".flash")).to_contain_text(
        "You signed in with a recovery code; 9 are left."
    )
    log_out(page)
    submit_password(page, base, ann)
    enter_code(page, codes[0])
    expect(page.locator("#id_code + .errorlist, .errorlist")).to_contain_text(
        "That code is not right or was used already."
    )


def test_repeated_wrong_passwords_lock_the_login_with_a_message(
    chromium_page, live_server, people, settings
):
    settings.AXES_FAILURE_LIMIT = 3
    page, base = chromium_page, live_server.url
    for _attempt in range(2):
        submit_password(page, base, people.user.email, "not my password")
        expect(page.locator(".errorlist")).to_contain_text("Please enter a correct")
    submit_password(page, base, people.user.email, "not my password")
    expect(page.locator("#locked-out")).to_contain_text(
        "Too many failed sign-ins. Signing in is locked for 15 minutes"
    )

    submit_password(page, base, people.user.email)  # the right password, too late
    expect(page.locator("#locked-out")).to_be_visible()
    expect(page.locator("header .whoami")).to_have_count(0)


def test_sign_out_everywhere_ends_the_other_browsers_session_too(
    chromium_page, live_server, people
):
    page, base, ann = chromium_page, live_server.url, people.user.email
    other = page.context.browser.new_context()
    try:
        other_page = other.new_page()
        log_in(other_page, base, ann)
        log_in(page, base, ann)
        page.goto(f"{base}/settings/security/")
        expect(page.locator("#sessions tbody tr")).to_have_count(2)
        expect(page.locator("#sessions")).to_contain_text("this browser")

        page.get_by_role("button", name="Sign out everywhere").click()

        expect(page.locator("#id_username")).to_be_visible()
        other_page.goto(f"{base}/settings/security/")
        expect(other_page.locator("#id_username")).to_be_visible()  # sent to the login page
    finally:
        other.close()


def test_add_a_passkey_then_sign_in_with_it_alone(chromium_page, live_server, people, settings):
    page, base, ann = chromium_page, live_server.url, people.user.email
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [base]
    totp = pyotp.TOTP(pyotp.random_base32())
    TOTPDevice.objects.create(user=people.user, name="app", key=b32_to_hex(totp.secret))
    # Chromium's virtual authenticator stands in for the phone or security key.
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )

    submit_password(page, base, ann)
    enter_code(page, totp.now())
    page.goto(f"{base}/settings/security/")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#passkeys tbody tr")).to_have_count(1)  # the page reloads with it
    log_out(page)
    # The passkey button works once the sign-in script has run (deferred, attached on load): on
    # a busy machine a click right after the form shows would do nothing.
    page.wait_for_load_state("load")

    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(page.locator("header .whoami")).to_contain_text(ann, timeout=SLOW)
    assert page.url == f"{base}/settings/send-as/"  # straight home, as after a password
