"""SMTP passwords are encrypted at rest under a named key, and keys can rotate."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from gateways.models import SmtpServer
from mailkit import secrets


def stored_password(server: SmtpServer) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM gateways_smtpserver WHERE id = %s", [server.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def keys(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SENDGATE_SECRETS_KEYS = f"old:{old}"
    return old, new


def test_database_holds_no_smtp_password_in_clear(db, keys):
    server = SmtpServer.objects.create(host="smtp.partner.org", username="u", password="hunter2!")
    raw = stored_password(server)
    assert "hunter2!" not in raw
    assert raw.startswith("old:")
    assert SmtpServer.objects.get(pk=server.pk).password == "hunter2!"


def test_values_under_an_older_key_still_decrypt_after_a_new_key_is_added(db, settings, keys):
    old, new = keys
    server = SmtpServer.objects.create(host="smtp.partner.org", password="hunter2!")
    settings.SENDGATE_SECRETS_KEYS = f"new:{new},old:{old}"
    assert SmtpServer.objects.get(pk=server.pk).password == "hunter2!"
    server.save()  # re-saving encrypts under the newest key
    assert stored_password(server).startswith("new:")


def test_a_value_under_a_removed_key_fails_loudly(db, settings, keys):
    _old, new = keys
    server = SmtpServer.objects.create(host="smtp.partner.org", password="hunter2!")
    settings.SENDGATE_SECRETS_KEYS = f"new:{new}"
    with pytest.raises(secrets.SecretUnreadable, match="'old', which is not configured"):
        SmtpServer.objects.get(pk=server.pk)


def test_rotate_secrets_moves_every_password_to_the_new_key(db, settings, keys):
    from io import StringIO

    from django.core.management import call_command

    old, new = keys
    servers = [SmtpServer.objects.create(host=f"h{n}.test", password=f"pw{n}") for n in range(3)]
    SmtpServer.objects.create(host="nopassword.test")  # nothing to rotate
    settings.SENDGATE_SECRETS_KEYS = f"new:{new},old:{old}"
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "Re-encrypted 3 password(s) under key 'new'; 0 stored under another key." in (
        out.getvalue()
    )

    settings.SENDGATE_SECRETS_KEYS = f"new:{new}"  # the old key is gone now
    assert [SmtpServer.objects.get(pk=s.pk).password for s in servers] == ["pw0", "pw1", "pw2"]
    assert all(stored_password(s).startswith("new:") for s in servers)


def test_rotate_secrets_stops_on_a_password_no_configured_key_can_read(db, settings, keys):
    from django.core.management import CommandError, call_command

    _old, new = keys
    SmtpServer.objects.create(host="h.test", password="pw")
    settings.SENDGATE_SECRETS_KEYS = f"new:{new}"  # old key removed too early
    with pytest.raises(CommandError, match="'old', which is not configured"):
        call_command("rotate_secrets")


def test_dkim_private_keys_are_encrypted_and_rotate_with_the_passwords(db, settings, keys):
    from io import StringIO

    from django.core.management import call_command

    from directory.models import Domain
    from domainkeys.keys import generate_key
    from domainkeys.models import DkimKey

    old, new = keys
    key = generate_key(Domain.objects.create(name="example.org"), DkimKey.Algorithm.ED25519)
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM domainkeys_dkimkey WHERE id = %s", [key.pk])
        [raw] = cursor.fetchone()
    assert raw.startswith("old:") and key.private_key not in raw

    settings.SENDGATE_SECRETS_KEYS = f"new:{new},old:{old}"
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "Re-encrypted 1 DKIM private key(s) under key 'new'" in out.getvalue()
    settings.SENDGATE_SECRETS_KEYS = f"new:{new}"
    assert DkimKey.objects.get(pk=key.pk).private_key == key.private_key


def test_rotate_secrets_moves_oauth_tokens_to_the_new_key_too(db, settings, keys):
    from datetime import UTC, datetime

    from django.core.management import call_command

    from mailkit.oauth import Tokens

    old, new = keys
    server = SmtpServer(host="smtp.partner.org", username="ann@partner.org")
    # Plaintexts with characters base64 never produces, so no ciphertext contains them by chance.
    server.sign_in("generic", Tokens("access!1", "refresh!1", datetime.now(tz=UTC)))
    server.save()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT oauth_refresh_token, oauth_access_token FROM gateways_smtpserver WHERE id = %s",
            [server.pk],
        )
        stored = cursor.fetchone()
    assert all(value.startswith("old:") and "!1" not in value for value in stored)

    settings.SENDGATE_SECRETS_KEYS = f"new:{new},old:{old}"
    call_command("rotate_secrets", stdout=None)
    settings.SENDGATE_SECRETS_KEYS = f"new:{new}"
    server = SmtpServer.objects.get(pk=server.pk)
    assert (server.oauth_refresh_token, server.oauth_access_token) == ("refresh!1", "access!1")
