"""The user's app passwords: the only passwords the SMTP submission port accepts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from directory.access import AuthenticatedRequest

from .credentials import create_app_password
from .forms import AppPasswordForm
from .models import AppPassword


def get_app_password_for_user(request: HttpRequest, pk: int) -> AppPassword:
    return get_object_or_404(AppPassword.objects.for_account(request.user), pk=pk)


# The new password rides in the session from the POST to the page it redirects to, and is
# removed there: shown once, and a reload cannot create a second one (post/redirect/get).
SESSION_KEY = "new_app_password"


@login_required
@never_cache  # the page can show a new password: no browser or proxy may keep a copy
def app_password_list(request: AuthenticatedRequest) -> HttpResponse:
    form = AppPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created, password = create_app_password(request.user, form.cleaned_data["name"])
        request.session[SESSION_KEY] = {"id": created.pk, "password": password}
        return redirect("app_password_list")
    shown = request.session.pop(SESSION_KEY, None)
    app_passwords = AppPassword.objects.for_account(request.user)
    shown_password = app_passwords.filter(pk=shown["id"]).first() if shown else None
    return render(
        request,
        "outbound/app_passwords.html",
        {
            "form": form,
            "app_passwords": app_passwords,
            "created": shown_password,
            "new_password": shown["password"] if shown_password else None,
            "submission_host": settings.SENDGATE_SUBMISSION_HOSTNAME,
            "submission_port": settings.SENDGATE_SUBMISSION_PORT,
        },
    )


@login_required
def app_password_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    app_password = get_app_password_for_user(request, pk)
    if request.method == "POST":
        app_password.delete()
        messages.success(
            request,
            _("“%(name)s” is revoked: it no longer works for sending.")
            % {"name": app_password.name},
        )
        return redirect("app_password_list")
    return render(request, "outbound/app_password_revoke.html", {"app_password": app_password})
