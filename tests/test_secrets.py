"""SMTP passwords are encrypted at rest under a named key, and keys can rotate."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from gateways import secrets
from gateways.models import SmtpServer


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
