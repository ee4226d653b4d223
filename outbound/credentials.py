"""App passwords for SMTP submission, and the throttle on failed submission logins."""

from __future__ import annotations

import logging
import secrets
import string
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.utils import timezone

from directory.models import Account
from mailkit.logs import event

from . import metrics
from .models import AppPassword, AuthFailure

log = logging.getLogger("sendgate.submission")

_ALPHABET = string.ascii_lowercase  # easy to type on a phone; 16 letters carry about 75 bits


def create_app_password(account: Account, name: str) -> tuple[AppPassword, str]:
    """Store a new app password's hash and return the password itself, to show once."""
    plain = " ".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _group in range(4))
    app_password = AppPassword.objects.create(
        account=account, name=name, password_hash=make_password(_canonical(plain))
    )
    return app_password, plain


def _canonical(password: str) -> str:
    # Shown in groups of four for reading; clients may send it with or without the spaces.
    return "".join(password.split()).lower()


def candidates(login: str) -> list[AppPassword]:
    """App passwords of the active account whose primary address is ``login``, last used first."""
    account = Account.objects.filter(email__iexact=login.strip(), is_active=True).first()
    if account is None:
        return []
    return list(
        AppPassword.objects.for_account(account)
        .select_related("account")
        .order_by("-last_used_at", "-id")
    )


def matching(password: str, app_passwords: list[AppPassword]) -> AppPassword | None:
    """The app password that ``password`` is; pure CPU (hashing), no database access."""
    password = _canonical(password)
    if not app_passwords:
        # Hash anyway, so an unknown login takes as long as a wrong password (no enumeration by
        # timing), as Django's ModelBackend does.
        make_password(password)
        return None
    for app_password in app_passwords:
        if check_password(password, app_password.password_hash):
            return app_password
    return None


def record_use(app_password: AppPassword) -> None:
    AppPassword.objects.filter(pk=app_password.pk).update(last_used_at=timezone.now())


def still_valid(app_password_id: int) -> bool:
    """Whether a session that logged in with this app password may go on sending: the password
    is not revoked and its account is still active."""
    return AppPassword.objects.filter(pk=app_password_id, account__is_active=True).exists()


# --- throttling -------------------------------------------------------------------------------


def _window_start():
    return timezone.now() - timedelta(minutes=settings.SENDGATE_AUTH_FAILURE_WINDOW_MINUTES)


def is_locked(remote_ip: str, login: str) -> bool:
    """Too many recent failures from this address or for this login name."""
    since = _window_start()
    limit = settings.SENDGATE_AUTH_MAX_FAILURES
    recent = AuthFailure.objects.filter(failed_at__gte=since)
    locked = (
        recent.filter(remote_ip=remote_ip).count() >= limit
        or recent.filter(login=login.lower()).count() >= limit
    )
    if locked:
        event(log, "submission.auth_locked", logging.WARNING, login=login, ip=remote_ip)
    return locked


def record_failure(remote_ip: str, login: str) -> int:
    """Remember a failed login; return how many failures this address has in the window."""
    since = _window_start()
    AuthFailure.objects.filter(failed_at__lt=since).delete()  # keeps the table small
    AuthFailure.objects.create(remote_ip=remote_ip, login=login.lower()[:320])
    count = AuthFailure.objects.filter(remote_ip=remote_ip, failed_at__gte=since).count()
    event(
        log,
        "submission.auth_failed",
        logging.WARNING,
        login=login,
        ip=remote_ip,
        recent_failures_from_ip=count,
    )
    metrics.AUTH_FAILURES.inc()
    return count


def failure_delay(recent_failures: int) -> float:
    """Seconds to wait before answering a failed login: longer the more an address fails."""
    return settings.SENDGATE_AUTH_FAILURE_DELAY * min(recent_failures, 5)
