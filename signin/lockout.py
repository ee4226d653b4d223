"""Console login throttling (django-axes, database handler) and what admins see of it.

Every failed sign-in (a wrong password, or a wrong code at the second step) counts for the
client's IP address and for the login name; at SENDGATE_LOGIN_MAX_FAILURES either one is locked
for SENDGATE_LOGIN_LOCKOUT_MINUTES after its last failure.
"""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt, AccessFailureLog
from axes.utils import reset
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.db.models import Max, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import ngettext

from directory.models import Domain


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind SENDGATE_TRUSTED_PROXY_COUNT reverse
    proxies the X-Forwarded-For entry the outermost trusted proxy wrote (a client can prepend
    anything to that header, so the entries before it are not trusted)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.SENDGATE_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-proxies] if len(forwarded) >= proxies else remote


def login_name(request: HttpRequest, credentials: dict | None) -> str | None:
    """The login name a failure counts for, so "Ann@Example.com " and "ann@example.com" are
    one account to the throttle."""
    raw = credentials.get("username") if credentials else request.POST.get("username")
    if not raw:
        return None
    return str(raw).strip().lower()[:255]


def lockout_message() -> str:
    minutes = settings.SENDGATE_LOGIN_LOCKOUT_MINUTES
    return ngettext(
        "Too many failed sign-ins. Signing in is locked for %(minutes)d minute after the last "
        "failed attempt; wait, then try again.",
        "Too many failed sign-ins. Signing in is locked for %(minutes)d minutes after the last "
        "failed attempt; wait, then try again.",
        minutes,
    ) % {"minutes": minutes}


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The login page with the lockout message (axes' AXES_LOCKOUT_CALLABLE), 429."""
    return render(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "locked_out": lockout_message()},
        status=429,
    )


def is_locked_out(request: HttpRequest, login: str) -> bool:
    return not AxesProxyHandler.is_allowed(request, {"username": login})


def record_failed_code(request: HttpRequest, login: str) -> None:
    """A wrong second-step code counts like a wrong password (axes listens to this signal)."""
    user_login_failed.send(sender=__name__, credentials={"username": login}, request=request)


def failed_sign_ins(domain: Domain) -> QuerySet[AccessFailureLog]:
    """Failed console sign-ins for login names in this domain, newest first (also names that
    have no account: someone guessing is worth seeing)."""
    return AccessFailureLog.objects.filter(username__iendswith="@" + domain.name).order_by(
        "-attempt_time", "-id"
    )


def recent_failures_by_login(domain: Domain) -> list[dict]:
    """Per login name of this domain: failures that still count (since the last lockout
    expired or was lifted), the last one, and whether that name is locked out now."""
    rows = (
        AccessAttempt.objects.filter(username__iendswith="@" + domain.name)
        .values("username")
        .annotate(failures=Sum("failures_since_start"), last_failure=Max("attempt_time"))
        .order_by("-last_failure")
    )
    limit = settings.SENDGATE_LOGIN_MAX_FAILURES
    return [row | {"locked": row["failures"] >= limit} for row in rows]


def unlock(login: str) -> int:
    """Lift a lockout of this login name now; returns how many attempt records were cleared."""
    return reset(username=login.strip().lower())
