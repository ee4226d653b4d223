"""Passkeys (WebAuthn) through django-otp-webauthn: an account that has two-step verification
may add passkeys, and then sign in with one instead of the password and the code.

A passkey is phishing-resistant and cannot be guessed, so signing in with one does not count
towards the lockout; but an address that is locked out stays locked for passkeys too.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path
from django.utils.translation import gettext as _
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import views as webauthn
from django_otp_webauthn.exceptions import OTPWebAuthnApiError
from django_otp_webauthn.models import WebAuthnCredential

from directory.models import Account

from . import twostep
from .lockout import is_locked_out, lockout_message


def of(account: Account) -> QuerySet[WebAuthnCredential]:
    return WebAuthnCredential.objects.filter(user=account).order_by("created_at", "id")


class LockedOut(OTPWebAuthnApiError):
    status_code = 429
    default_code = "locked_out"


class TwoStepFirst(OTPWebAuthnApiError):
    status_code = 403
    default_code = "two_step_first"


class CompleteAuthentication(webauthn.CompleteCredentialAuthenticationView):
    """django-otp-webauthn's sign-in, refused (429, with the lockout message) from a locked-out
    address: the authentication backends would refuse it anyway, and the view would fail."""

    def check_can_authenticate(self) -> None:
        super().check_can_authenticate()
        if is_locked_out(self.request, ""):
            raise LockedOut(detail=lockout_message())


class BeginRegistration(webauthn.BeginCredentialRegistrationView):
    def check_can_register(self) -> None:
        # Passkeys come on top of an authenticator app, which brings the recovery codes.
        if not twostep.is_enrolled(self.request.user):
            raise TwoStepFirst(
                detail=_(
                    "Set up two-step verification with an authenticator app before adding a "
                    "passkey."
                )
            )


# The library's URLs (its JavaScript reverses these names), with the two views above.
app_name = "otp_webauthn"
urlpatterns = [
    path("registration/begin/", BeginRegistration.as_view(), name="credential-registration-begin"),
    path(
        "registration/complete/",
        webauthn.CompleteCredentialRegistrationView.as_view(),
        name="credential-registration-complete",
    ),
    path(
        "authentication/begin/",
        webauthn.BeginCredentialAuthenticationView.as_view(),
        name="credential-authentication-begin",
    ),
    path(
        "authentication/complete/",
        CompleteAuthentication.as_view(),
        name="credential-authentication-complete",
    ),
    path(
        "jsi18n/",
        JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
        name="js-i18n-catalog",
    ),
]
