"""Passwords: the set-password link (invitations and resets), and forgot my password.

Changing one's password is a sign-in page (signin/): it also signs out the other sessions.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from outbox.onboarding import send_password_reset

from .models import Account, PasswordResetRequest


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The link in an invitation or reset mail: choose a password, then log in."""

    template_name = "registration/set_password.html"
    success_url = reverse_lazy("login")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _("Your password is set. Log in with it now."))
        return response


class ForgotPasswordForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("E-mail address"), max_length=254)


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _throttled(email: str, ip: str | None) -> bool:
    since = timezone.now() - timedelta(hours=1)
    limit = settings.SENDGATE_PASSWORD_RESETS_PER_HOUR
    recent = PasswordResetRequest.objects.filter(created_at__gte=since)
    return recent.filter(email=email).count() >= limit or (
        ip is not None and recent.filter(remote_ip=ip).count() >= limit
    )


def password_forgot(request: HttpRequest) -> HttpResponse:
    """Mail a reset link. Every address gets the same answer, known or not (no enumeration)."""
    form = ForgotPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        ip = _client_ip(request)
        PasswordResetRequest.objects.filter(
            created_at__lt=timezone.now() - timedelta(days=1)
        ).delete()
        if not _throttled(email, ip):
            PasswordResetRequest.objects.create(email=email[:320], remote_ip=ip)
            account = (
                Account.objects.filter(email__iexact=email, is_active=True, domain__isnull=False)
                .select_related("domain")
                .first()
            )
            if account is not None:
                send_password_reset(account)
        messages.success(
            request,
            _(
                "If %(address)s has an account here, a link to choose a new password is on its "
                "way. It works once, for %(hours)s hours."
            )
            % {"address": email, "hours": settings.PASSWORD_RESET_TIMEOUT // 3600},
        )
        return redirect("login")
    return render(request, "registration/password_forgot.html", {"form": form})
