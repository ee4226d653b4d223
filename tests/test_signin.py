"""Console sign-in: lockout, two-step verification, sessions, and the headers that protect it."""

from __future__ import annotations

import time
from base64 import b32encode
from datetime import timedelta

import pyotp
import pytest
from axes.models import AccessFailureLog
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from signin import twostep
from signin.models import ConsoleSession, TwoStepDeadline

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lockout_after_three(settings):
    settings.SENDGATE_LOGIN_MAX_FAILURES = 3
    settings.AXES_FAILURE_LIMIT = 3


def sign_in(client: Client, email: str, password: str = PASSWORD, ip: str = "192.0.2.10", **extra):
    return client.post(
        reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip, **extra
    )


def signed_in_as(client: Client) -> str | None:
    response = client.get(reverse("security"))
    if response.status_code != 200:
        return None
    return response.context["user"].email


def enrol(account) -> pyotp.TOTP:
    """Give the account a confirmed authenticator; returns the app's view of it."""
    device = TOTPDevice.objects.create(user=account, name="app", confirmed=True)
    return pyotp.TOTP(b32encode(device.bin_key).decode())


def next_code(totp: pyotp.TOTP) -> str:
    # django-otp refuses a code of a time step it has already accepted; the next step's code is
    # within its tolerance of one step.
    return totp.at(time.time() + 30)


# --- lockout -----------------------------------------------------------------------------------


def test_failed_sign_ins_lock_the_account_even_for_the_right_password(client, people):
    for _attempt in range(2):
        assert sign_in(client, people.user.email, "wrong").status_code == 200
    assert sign_in(client, people.user.email, "wrong").status_code == 429  # the third locks

    response = sign_in(client, people.user.email)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins" in page and "locked for 15 minutes" in page
    assert signed_in_as(client) is None


def test_the_account_lock_holds_from_another_address_and_for_other_spellings(people):
    for _attempt in range(3):
        sign_in(Client(), people.user.email, "wrong", ip="192.0.2.10")
    elsewhere = Client()
    assert sign_in(elsewhere, " ANN@example.com", ip="198.51.100.7").status_code == 429
    assert signed_in_as(elsewhere) is None


def test_failures_for_many_accounts_lock_the_address_but_not_other_addresses(people):
    attacker = Client()
    for number in range(3):
        sign_in(attacker, f"guess{number}@example.com", "wrong", ip="203.0.113.9")
    assert sign_in(attacker, people.admin.email, ip="203.0.113.9").status_code == 429

    bystander = Client()
    assert sign_in(bystander, people.admin.email, ip="192.0.2.44").status_code == 302
    assert signed_in_as(bystander) == people.admin.email


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(people, settings):
    settings.SENDGATE_TRUSTED_PROXY_COUNT = 1
    for number in range(3):
        sign_in(
            Client(),
            f"guess{number}@example.com",
            "wrong",
            ip="10.0.0.2",  # the proxy
            HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.9",
        )
    assert set(AccessFailureLog.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}
    # Another client behind the same proxy is not locked out.
    other = Client()
    response = sign_in(other, people.user.email, ip="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.80")
    assert response.status_code == 302


def test_admins_see_their_domains_failed_sign_ins_and_can_unlock(client, people):
    for _attempt in range(3):
        sign_in(Client(), people.user.email, "wrong")
    sign_in(Client(), people.outsider.email, "wrong", ip="198.51.100.1")

    assert client.login(username=people.admin.email, password=PASSWORD)
    response = client.get(reverse("domain_sign_in", args=[people.domain.pk]))
    page = response.content.decode()
    assert page.count("ann@example.com</td>") == 1 + 3 and "192.0.2.10" in page
    assert "zoe@other.example" not in page  # another domain's sign-ins stay there
    [ann_row] = response.context["by_login"]
    assert ann_row["username"] == "ann@example.com" and ann_row["failures"] == 3
    assert ann_row["locked"] and "locked out" in page

    client.post(reverse("domain_unlock", args=[people.domain.pk]), {"login": "ann@example.com"})
    assert sign_in(Client(), people.user.email, ip="198.51.100.2").status_code == 302


def test_an_admin_cannot_unlock_a_login_of_another_domain(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    response = client.post(
        reverse("domain_unlock", args=[people.domain.pk]), {"login": "zoe@other.example"}
    )
    assert response.status_code == 404


def test_a_plain_user_cannot_open_the_domain_sign_in_page(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    assert client.get(reverse("domain_sign_in", args=[people.domain.pk])).status_code == 404


# --- two-step verification ---------------------------------------------------------------------


def test_with_two_step_the_password_alone_does_not_sign_in(client, people):
    totp = enrol(people.user)

    response = sign_in(client, people.user.email)

    assert response.status_code == 302 and response["Location"] == reverse("login_verify")
    assert signed_in_as(client) is None
    response = client.post(reverse("login_verify"), {"code": next_code(totp)})
    assert response.status_code == 302
    assert signed_in_as(client) == people.user.email


def test_the_code_step_needs_the_password_step_first(client, people):
    enrol(people.user)
    response = client.get(reverse("login_verify"))
    assert response.status_code == 302 and response["Location"] == reverse("login")


def test_the_code_step_expires(client, people, monkeypatch):
    totp = enrol(people.user)
    sign_in(client, people.user.email)
    later = time.time() + 301
    monkeypatch.setattr("signin.views.time.time", lambda: later)
    response = client.post(reverse("login_verify"), {"code": next_code(totp)})
    assert response["Location"] == reverse("login")
    assert signed_in_as(client) is None


def test_wrong_codes_count_as_failed_sign_ins_and_lock(client, people):
    totp = enrol(people.user)
    sign_in(client, people.user.email)
    for _attempt in range(2):
        response = client.post(reverse("login_verify"), {"code": "000000"})
        assert "That code is not right" in response.content.decode()
    response = client.post(reverse("login_verify"), {"code": "000001"})
    assert response.status_code == 429

    response = client.post(reverse("login_verify"), {"code": next_code(totp)})
    assert response.status_code == 429
    assert signed_in_as(client) is None


def test_a_recovery_code_signs_in_once(people):
    enrol(people.user)
    codes = twostep.new_recovery_codes(people.user)
    assert len(codes) == 10 and len(set(codes)) == 10

    first = Client()
    sign_in(first, people.user.email)
    first.post(reverse("login_verify"), {"code": codes[0].upper()})
    assert signed_in_as(first) == people.user.email
    assert twostep.recovery_codes_left(people.user) == 9

    second = Client()
    sign_in(second, people.user.email)
    response = second.post(reverse("login_verify"), {"code": codes[0]})
    assert "That code is not right" in response.content.decode()
    assert signed_in_as(second) is None


def test_enrolment_shows_a_qr_code_then_ten_recovery_codes_never_cached(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    client.post(reverse("two_step_start"))
    page = client.get(reverse("two_step_setup"))
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    assert 'src="data:image/svg+xml' in html
    secret = page.context["secret"].replace(" ", "")
    totp = pyotp.TOTP(secret)

    wrong = client.post(reverse("two_step_setup"), {"code": "12345"})
    assert "Enter the six digits the app shows." in wrong.content.decode()
    assert not twostep.is_enrolled(people.user)

    done = client.post(reverse("two_step_setup"), {"code": totp.now()})

    assert done.status_code == 302 and done["Location"] == reverse("recovery_codes")
    shown = client.get(done["Location"])
    assert "no-store" in shown["Cache-Control"]
    assert len(shown.context["codes"]) == 10
    assert twostep.is_enrolled(people.user)
    assert twostep.recovery_codes_left(people.user) == 10
    # Shown once: a reload goes back to the security page and makes no new codes.
    again = client.get(reverse("recovery_codes"))
    assert again.status_code == 302 and again["Location"] == reverse("security")
    assert twostep.recovery_codes_left(people.user) == 10


def test_turning_two_step_off_needs_the_password_and_signs_out_other_sessions(people):
    enrol(people.user)
    here, there = Client(), Client()
    for browser in (here, there):
        browser.force_login(people.user)
        browser.get(reverse("security"))  # recorded as a session

    refused = here.post(reverse("two_step_off"), {"password": "wrong"}, follow=True)
    assert "that is not your password" in refused.content.decode()
    assert twostep.is_enrolled(people.user) and signed_in_as(there)

    here.post(reverse("two_step_off"), {"password": PASSWORD})

    assert not twostep.is_enrolled(people.user)
    assert signed_in_as(here) == people.user.email
    assert signed_in_as(there) is None


# --- the domain requirement --------------------------------------------------------------------


def test_required_two_step_sends_admins_to_enrolment_after_sign_in(client, people):
    twostep.set_requirement(people.domain, True)

    response = sign_in(client, people.admin.email, follow=True)

    assert response.redirect_chain[-1][0] == reverse("security")
    assert "requires two-step verification for admins" in response.content.decode()
    # Within the grace period the rest of the console still opens.
    assert client.get(reverse("domain_list")).status_code == 200


def test_after_the_grace_period_only_the_enrolment_pages_open(client, people):
    twostep.set_requirement(people.domain, True)
    client.force_login(people.admin)
    TwoStepDeadline.objects.create(account=people.admin, due_at=timezone.now() - timedelta(1))

    response = client.get(reverse("domain_list"))
    assert response.status_code == 302 and response["Location"] == reverse("security")
    assert client.post(reverse("two_step_start")).status_code == 302
    assert client.get(reverse("two_step_setup")).status_code == 200

    enrol(people.admin)
    assert client.get(reverse("domain_list")).status_code == 200


def test_the_requirement_is_for_admins_only(client, people):
    twostep.set_requirement(people.domain, True)
    TwoStepDeadline.objects.create(account=people.user, due_at=timezone.now() - timedelta(1))
    client.force_login(people.user)
    assert client.get(reverse("alias_list")).status_code == 200


def test_switching_the_requirement_on_gives_a_fresh_grace_period(client, people, settings):
    TwoStepDeadline.objects.create(account=people.admin, due_at=timezone.now() - timedelta(30))
    client.force_login(people.admin)
    client.post(
        reverse("domain_sign_in", args=[people.domain.pk]), {"require_two_step_for_admins": "on"}
    )
    people.domain.refresh_from_db()
    assert people.domain.require_two_step_for_admins
    due = twostep.enrolment_due(people.admin)
    assert due > timezone.now() + timedelta(days=settings.SENDGATE_TWO_STEP_GRACE_DAYS - 1)


# --- sessions ----------------------------------------------------------------------------------


def test_the_sessions_list_shows_each_browser_and_sign_out_everywhere_ends_them_all(people):
    laptop, phone = Client(), Client()
    sign_in(laptop, people.user.email, HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) Firefox/128.0")
    sign_in(
        phone,
        people.user.email,
        ip="198.51.100.20",
        HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1",
    )

    page = laptop.get(reverse("security")).content.decode()
    assert "Firefox / Linux" in page and "Safari / iPhone" in page
    assert "198.51.100.20" in page and "this browser" in page

    laptop.post(reverse("sign_out_everywhere"))

    assert signed_in_as(laptop) is None and signed_in_as(phone) is None
    assert not ConsoleSession.objects.filter(account=people.user).exists()


def test_one_other_session_can_be_signed_out(people):
    laptop, phone = Client(), Client()
    sign_in(laptop, people.user.email)
    sign_in(phone, people.user.email)
    phone_session = ConsoleSession.objects.get(session_key=phone.session.session_key)

    laptop.post(reverse("session_end", args=[phone_session.pk]))

    assert signed_in_as(phone) is None
    assert signed_in_as(laptop) == people.user.email


def test_another_accounts_session_is_a_404(client, people):
    other = Client()
    sign_in(other, people.outsider.email)
    session = ConsoleSession.objects.get(account=people.outsider)
    client.force_login(people.user)
    assert client.post(reverse("session_end", args=[session.pk])).status_code == 404
    assert signed_in_as(other) == people.outsider.email


def test_changing_the_password_signs_out_other_sessions(people):
    here, there = Client(), Client()
    sign_in(here, people.user.email)
    sign_in(there, people.user.email)

    response = here.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a new and long passphrase",
            "new_password2": "a new and long passphrase",
        },
    )

    assert response.status_code == 302
    assert signed_in_as(here) == people.user.email
    assert signed_in_as(there) is None
    assert ConsoleSession.objects.filter(account=people.user).count() == 1


def test_expired_sessions_leave_the_list(client, people, settings):
    stale = ConsoleSession.objects.create(
        account=people.user,
        session_key="expired-long-ago",
        last_seen_at=timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE + 60),
    )
    sign_in(client, people.user.email)
    assert not ConsoleSession.objects.filter(pk=stale.pk).exists()
    assert ConsoleSession.objects.filter(account=people.user).count() == 1


def test_logging_out_forgets_the_session(client, people):
    sign_in(client, people.user.email)
    assert ConsoleSession.objects.filter(account=people.user).count() == 1
    client.post(reverse("logout"))
    assert not ConsoleSession.objects.filter(account=people.user).exists()


# --- headers -----------------------------------------------------------------------------------


def test_pages_carry_a_content_security_policy_without_inline_script(client, people):
    client.force_login(people.user)
    response = client.get(reverse("alias_list"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    html = response.content.decode()
    assert "<script>" not in html and " style=" not in html and "hx-on" not in html


def test_a_new_app_password_page_is_never_cached(client, people):
    client.force_login(people.user)
    response = client.post(reverse("app_password_list"), {"name": "Laptop"}, follow=True)
    assert response.context["new_password"]  # shown on the page the POST redirects to
    assert "no-store" in response["Cache-Control"]


# --- passkeys --------------------------------------------------------------------------------
# (Adding one and signing in with it runs in Chromium: tests/test_browser_signin.py.)


def passkey_of(account, name: str = "Laptop") -> WebAuthnCredential:
    return WebAuthnCredential.objects.create(
        user=account,
        name=name,
        credential_id=name.encode(),
        public_key=b"not used here",
        sign_count=0,
    )


def test_a_passkey_needs_two_step_verification_first(client, people):
    client.force_login(people.user)
    response = client.post(reverse("otp_webauthn:credential-registration-begin"))
    assert response.status_code == 403
    assert "before adding a passkey" in response.json()["detail"]


def test_passkeys_are_listed_and_removed_by_their_owner_only(client, people):
    enrol(people.user)
    passkey = passkey_of(people.user)
    other = passkey_of(people.outsider, "Zoe's key")

    client.force_login(people.user)
    assert "Laptop" in client.get(reverse("security")).content.decode()
    assert client.post(reverse("passkey_remove", args=[other.pk])).status_code == 404
    client.post(reverse("passkey_remove", args=[passkey.pk]))

    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    assert WebAuthnCredential.objects.filter(pk=other.pk).exists()


def test_turning_two_step_off_removes_the_passkeys_too(client, people):
    enrol(people.user)
    passkey_of(people.user)
    client.force_login(people.user)
    client.post(reverse("two_step_off"), {"password": PASSWORD})
    assert not WebAuthnCredential.objects.filter(user=people.user).exists()


def test_a_locked_out_address_cannot_sign_in_with_a_passkey_either(client, people):
    for number in range(3):
        sign_in(Client(), f"guess{number}@example.com", "wrong", ip="203.0.113.9")
    response = client.post(
        reverse("otp_webauthn:credential-authentication-complete"),
        "{}",
        content_type="application/json",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.json()["detail"]
