"""Per-request sign-in duties: keep "last seen" of the session, enforce two-step enrolment."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.translation import gettext as _

from . import sessions, twostep

# Pages a signed-in user can always reach, also while enrolment is overdue.
ALWAYS_REACHABLE = frozenset(
    {
        "security",
        "two_step_start",
        "two_step_setup",
        "logout",
        "login",
        "login_verify",
        "set_language",
        "healthz",
    }
)


class ConsoleSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            sessions.touch(request)
        return self.get_response(request)


class TwoStepEnrolmentMiddleware:
    """An account whose domain requires two-step verification and whose grace period is over
    reaches only the enrolment pages until it has an authenticator."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and not self._always_reachable(request):
            due = twostep.enrolment_due(request.user)
            if due is not None and due <= timezone.now():
                messages.warning(
                    request,
                    _(
                        "Your domain requires two-step verification for admins. Set it up "
                        "to go on using the console."
                    ),
                )
                return redirect("security")
        return self.get_response(request)

    @staticmethod
    def _always_reachable(request: HttpRequest) -> bool:
        try:
            return resolve(request.path_info).url_name in ALWAYS_REACHABLE
        except Resolver404:
            return True  # a 404 stays a 404
