"""The console sessions of an account: listed with device, address and last use; ended at will.

Rows mirror Django's session store (whatever SESSION_ENGINE is): ending a session deletes it
from the store, so that browser is signed out at its next request.
"""

from __future__ import annotations

import time
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from directory.models import Account

from .lockout import client_ip
from .models import ConsoleSession

SEEN_KEY = "signin_seen"  # in the session: when its row's last_seen_at was last written
SEEN_EVERY_SECONDS = 60  # "last seen" to the minute: one write a minute, not one per request


def _store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def record(request: HttpRequest) -> None:
    """Remember the current session of the signed-in user (after login, or when first seen)."""
    key = request.session.session_key
    if key is None:
        request.session.save()
        key = request.session.session_key
    now = timezone.now()
    # Sessions that simply expired were never signed out: drop their rows here, so the table
    # stays as small as the account's real sessions.
    ConsoleSession.objects.for_account(request.user).filter(
        last_seen_at__lt=now - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    ).delete()
    ConsoleSession.objects.update_or_create(
        session_key=key,
        defaults={
            "account": request.user,
            "ip_address": client_ip(request) or None,
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
            "last_seen_at": now,
        },
        create_defaults={
            "account": request.user,
            "ip_address": client_ip(request) or None,
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
            "signed_in_at": now,
            "last_seen_at": now,
        },
    )
    request.session[SEEN_KEY] = time.time()


def touch(request: HttpRequest) -> None:
    """Update "last seen" of a signed-in request's session, at most once a minute."""
    if time.time() - request.session.get(SEEN_KEY, 0) >= SEEN_EVERY_SECONDS:
        record(request)


def active(account: Account):
    """The account's sessions that can still be in use, most recently seen first."""
    since = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    return ConsoleSession.objects.for_account(account).filter(last_seen_at__gte=since)


def end(sessions) -> int:
    """Sign these sessions out: delete them from the session store, and their rows."""
    store = _store()
    keys = list(sessions.values_list("session_key", flat=True))
    for key in keys:
        store().delete(key)
    ConsoleSession.objects.filter(session_key__in=keys).delete()
    return len(keys)


def end_others(request: HttpRequest) -> int:
    """Sign out every session of the user but this one; returns how many were ended."""
    return end(
        ConsoleSession.objects.for_account(request.user).exclude(
            session_key=request.session.session_key
        )
    )


def rekeyed(request: HttpRequest, old_key: str | None) -> None:
    """Follow the session to its new key after Django cycled it (a password change does)."""
    ConsoleSession.objects.filter(session_key=old_key).update(
        session_key=request.session.session_key
    )


def forget(request: HttpRequest) -> None:
    """Drop the row of the current session (before logout)."""
    ConsoleSession.objects.filter(session_key=request.session.session_key).delete()
