"""Test settings: the real settings, pointed at a throw-away var/ directory.

Values go through the environment (not only into this module) so that the Celery worker processes
the tests start see the same directory, queue, keys and database.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from cryptography.fernet import Fernet

os.environ.setdefault("SENDGATE_VAR_DIR", tempfile.mkdtemp(prefix="sendgate-test-"))
os.environ.setdefault("SENDGATE_CELERY_QUEUE", f"sendgate-test-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("SENDGATE_SECRETS_KEYS", f"test1:{Fernet.generate_key().decode()}")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-" + uuid.uuid4().hex)
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("SENDGATE_SMTP_DEADLINE", "10")
# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from config.settings import *  # noqa: E402, F403
from config.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a worker process opens the same test database.
    DATABASES["default"]["NAME"] = str(VAR_DIR / "test.sqlite3")
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
