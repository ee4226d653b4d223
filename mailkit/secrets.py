"""Encryption of stored SMTP passwords with a dedicated key (not SECRET_KEY).

A stored token is ``<key id>:<fernet token>`` so that the key which encrypted it is known and keys
can rotate: every configured key decrypts, the first one encrypts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class SecretUnreadable(Exception):
    """A stored secret names a key that is not configured, or its token is damaged."""


@functools.lru_cache(maxsize=4)
def _raw_keys(spec: str, key_file: str) -> tuple[tuple[str, str], ...]:
    if not spec:
        spec = _demo_key(key_file)
    keys = []
    for item in spec.split(","):
        key_id, sep, key = item.strip().partition(":")
        if not sep or not key_id or not key:
            raise ImproperlyConfigured("SENDGATE_SECRETS_KEYS must look like 'id:fernetkey,...'.")
        keys.append((key_id, key))
    return tuple(keys)


@functools.lru_cache(maxsize=4)
def _parse_keys(spec: str, key_file: str) -> tuple[tuple[str, Fernet], ...]:
    return tuple((key_id, Fernet(key.encode())) for key_id, key in _raw_keys(spec, key_file))


def _demo_key(key_file: str) -> str:
    """Read, or create once, a key file so a demo needs no configuration."""
    try:
        with open(key_file) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        spec = "demo:" + Fernet.generate_key().decode()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(spec + "\n")
        return spec


def keyring() -> tuple[tuple[str, Fernet], ...]:
    return _parse_keys(settings.SENDGATE_SECRETS_KEYS, str(settings.SENDGATE_SECRETS_KEY_FILE))


def encrypt(plaintext: str) -> str:
    key_id, fernet = keyring()[0]
    return f"{key_id}:{fernet.encrypt(plaintext.encode()).decode()}"


def decrypt(stored: str) -> str:
    key_id, _, token = stored.partition(":")
    for candidate_id, fernet in keyring():
        if candidate_id == key_id:
            try:
                return fernet.decrypt(token.encode()).decode()
            except InvalidToken as exc:
                raise SecretUnreadable(f"secret encrypted under key {key_id!r} is damaged") from exc
    raise SecretUnreadable(f"secret encrypted under key {key_id!r}, which is not configured")


def current_key_id() -> str:
    return keyring()[0][0]


@functools.lru_cache(maxsize=8)
def _derived(spec: str, key_file: str, purpose: str) -> tuple[tuple[str, bytes], ...]:
    return tuple(
        (key_id, hmac.new(key.encode(), purpose.encode(), hashlib.sha256).digest())
        for key_id, key in _raw_keys(spec, key_file)
    )


def derived_keys(purpose: str) -> tuple[tuple[str, bytes], ...]:
    """(key id, key) per configured key, newest first: a key of its own for ``purpose`` (e.g.
    keyed hashes of app passwords), derived from each encryption key so it rotates with them."""
    key_file = str(settings.SENDGATE_SECRETS_KEY_FILE)
    return _derived(settings.SENDGATE_SECRETS_KEYS, key_file, purpose)


class EncryptedTextField(models.TextField):
    """Stores ``encrypt(value)``; Python code only ever sees the plaintext."""

    def from_db_value(self, value, expression, connection):
        # An empty value stays "" (not None), so a loaded row saves back into a NOT NULL column.
        return value if value in (None, "") else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value in (None, "") else encrypt(value)
