"""The App passwords page: create (shown once, stored hashed), list, revoke; others' are a 404."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.hashers import make_password
from django.urls import reverse

from outbound.credentials import (
    candidates,
    create_app_password,
    matching,
    needs_rehash,
    record_use,
    slow_to_check,
)
from outbound.models import AppPassword

from .conftest import PASSWORD


@pytest.fixture
def ann_client(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    return client


def test_a_new_app_password_is_shown_once_and_stored_only_as_a_hash(ann_client, people):
    response = ann_client.post(reverse("app_password_list"), {"name": "Laptop"}, follow=True)
    assert response.redirect_chain == [(reverse("app_password_list"), 302)]  # post/redirect/get
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    shown = re.search(r'<code class="secret"[^>]*>([a-z ]+)</code>', page).group(1)
    app_password = AppPassword.objects.get(account=people.user)
    assert app_password.name == "Laptop"
    assert shown not in app_password.password_hash
    assert app_password.password_hash.startswith("hmac_sha256$")  # keyed, named by its key
    assert matching(shown.replace(" ", ""), candidates(people.user.email)) == app_password

    # Reloading the page shows the list, not the password, and creates nothing.
    again = ann_client.get(reverse("app_password_list")).content.decode()
    assert "Laptop" in again and shown not in again
    assert AppPassword.objects.filter(account=people.user).count() == 1


def test_the_app_password_matches_with_or_without_spaces_and_the_console_password_does_not(
    people,
):
    _app, shown = create_app_password(people.user, "Phone")
    found = candidates(people.user.email)
    assert matching(shown, found) is not None
    assert matching(shown.replace(" ", "").upper(), found) is not None
    assert matching(PASSWORD, found) is None


def test_revoking_asks_first_then_deletes(ann_client, people):
    app_password, _shown = create_app_password(people.user, "Old laptop")
    url = reverse("app_password_revoke", args=[app_password.pk])
    assert "Revoke “Old laptop”?" in ann_client.get(url).content.decode()
    assert AppPassword.objects.filter(pk=app_password.pk).exists()
    ann_client.post(url)
    assert not AppPassword.objects.filter(pk=app_password.pk).exists()


def test_another_users_app_password_is_a_404_and_stays(client, people):
    app_password, _shown = create_app_password(people.user, "Ann's desk")
    assert client.login(username=people.outsider.email, password=PASSWORD)
    url = reverse("app_password_revoke", args=[app_password.pk])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert AppPassword.objects.filter(pk=app_password.pk).exists()
    assert "Ann&#x27;s desk" not in client.get(reverse("app_password_list")).content.decode()


def test_app_passwords_are_in_the_user_navigation(ann_client):
    page = ann_client.get(reverse("app_password_list")).content.decode()
    assert f'href="{reverse("app_password_list")}" aria-current="page"' in page


def test_a_wrong_app_password_or_an_unknown_login_matches_nothing(people):
    _app, shown = create_app_password(people.user, "Phone")
    assert (
        matching(shown[:-1] + ("a" if shown[-1] != "a" else "b"), candidates(people.user.email))
        is None
    )
    assert candidates("nobody@example.com") == []
    assert matching(shown, candidates("nobody@example.com")) is None


def test_the_login_finds_the_account_whatever_the_case_of_the_address(people):
    _app, shown = create_app_password(people.user, "Phone")
    assert matching(shown, candidates(people.user.email.upper())) is not None


def test_an_app_password_stored_by_an_earlier_version_still_works_and_is_rehashed_on_use(
    people, settings
):
    """Earlier versions stored app passwords with Django's PBKDF2: an upgrade logs nobody out."""
    settings.PASSWORD_HASHERS = [
        *settings.PASSWORD_HASHERS,
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    plain = "abcdefghijklmnop"
    old = AppPassword.objects.create(
        account=people.user,
        name="Old phone",
        password_hash=make_password(plain, hasher="pbkdf2_sha256"),
    )
    found = candidates(people.user.email)
    assert needs_rehash(old) and slow_to_check(found)  # the listener checks it off its loop
    assert matching("abcd efgh ijkl mnop", found) == old
    assert matching("abcdefghijklmnoq", found) is None

    record_use(old, plain)

    old.refresh_from_db()
    assert old.password_hash.startswith("hmac_sha256$") and not needs_rehash(old)
    assert old.last_used_at is not None
    assert matching(plain, candidates(people.user.email)) == old
    assert not slow_to_check(candidates(people.user.email))


def test_app_passwords_survive_a_key_rotation_and_move_to_the_new_key_on_use(people, settings):
    _app, shown = create_app_password(people.user, "Laptop")
    old_keys = settings.SENDGATE_SECRETS_KEYS
    settings.SENDGATE_SECRETS_KEYS = f"new:{Fernet.generate_key().decode()},{old_keys}"
    [app_password] = candidates(people.user.email)
    assert needs_rehash(app_password)
    assert matching(shown, [app_password]) == app_password

    record_use(app_password, shown)
    settings.SENDGATE_SECRETS_KEYS = settings.SENDGATE_SECRETS_KEYS.partition(",")[
        0
    ]  # old key retired

    [app_password] = candidates(people.user.email)
    assert app_password.password_hash.startswith("hmac_sha256$new$")
    assert matching(shown, [app_password]) == app_password
