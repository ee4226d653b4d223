"""Signing in (password, then a code when the account has two-step verification), the user's
security page (two-step verification, recovery codes, sessions, password) and the admin's
sign-in page of a domain (the two-step requirement, failed sign-ins, unlocking)."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import dateformat, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice

from directory.access import AuthenticatedRequest, get_domain_for_admin
from directory.models import Account
from directory.time_zones import zone_of

from . import lockout, passkeys, sessions, twostep
from .forms import CodeForm, ConfirmAuthenticatorForm, PasswordConfirmForm, TwoStepRequirementForm
from .models import ConsoleSession

PENDING_KEY = "signin_pending"  # in the session between the password and the code
PENDING_SECONDS = 300
RECOVERY_CODES_KEY = "new_recovery_codes"  # in the session from the POST to the page after it
FAILURES_PAGE = 50


def _safe_next(request: HttpRequest, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return ""


# --- signing in -------------------------------------------------------------------------------


@sensitive_post_parameters("password")
@never_cache
def login(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.user.is_authenticated:
        return redirect(next_url or settings.LOGIN_REDIRECT_URL)
    form = AuthenticationForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = form.get_user()
        if twostep.is_enrolled(account):
            # Not signed in yet: the session only remembers who passed the first step.
            request.session[PENDING_KEY] = {
                "account": account.pk,
                "backend": account.backend,  # type: ignore[attr-defined]  # set by authenticate(); not in the stubs
                "next": next_url,
                "at": time.time(),
            }
            return redirect("login_verify")
        return _complete_login(request, account, None, next_url)
    return render(request, "registration/login.html", {"form": form, "next": next_url})


@sensitive_post_parameters("code")
@never_cache
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the authenticator app, or a recovery code."""
    pending = request.session.get(PENDING_KEY) or {}
    account = None
    if pending and time.time() - pending["at"] < PENDING_SECONDS:
        account = Account.objects.filter(pk=pending["account"], is_active=True).first()
    if account is None:
        request.session.pop(PENDING_KEY, None)
        messages.info(request, _("Please sign in again."))
        return redirect("login")
    if lockout.is_locked_out(request, account.email):
        return lockout.lockout_response(request, None, None)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = twostep.verify_code(account, form.cleaned_data["code"])
        if device is not None:
            del request.session[PENDING_KEY]
            account.backend = pending["backend"]  # type: ignore[attr-defined]  # read by login(); not in the stubs
            return _complete_login(request, account, device, pending["next"])
        # Counts like a wrong password; at the limit axes answers with the lockout page.
        lockout.record_failed_code(request, account.email)
        form.add_error(
            "code",
            _(
                "That code is not right or was used already. Wait for the next code from the "
                "app and try again."
            ),
        )
    return render(request, "signin/login_verify.html", {"form": form})


def _complete_login(
    request: HttpRequest, account: Account, device: Device | None, next_url: str
) -> HttpResponse:
    auth_login(request, account)
    if device is not None:
        otp_login(request, device)
        if isinstance(device, StaticDevice):
            left = twostep.recovery_codes_left(account)
            messages.warning(
                request,
                ngettext(
                    "You signed in with a recovery code; %(count)d is left.",
                    "You signed in with a recovery code; %(count)d are left.",
                    left,
                )
                % {"count": left},
            )
    sessions.record(request)
    due = twostep.enrolment_due(account)
    if due is not None:
        messages.warning(
            request,
            _(
                "Your domain requires two-step verification for admins. Set it up now; from "
                "%(date)s the console is closed to you without it."
            )
            # In the person's own zone: this request began before they were signed in.
            % {"date": dateformat.format(timezone.localtime(due, zone_of(account)), "Y-m-d H:i T")},
        )
        return redirect("security")
    return redirect(next_url or settings.LOGIN_REDIRECT_URL)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        sessions.forget(request)
    auth_logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


# --- the user's security page -----------------------------------------------------------------


@login_required
def security(request: AuthenticatedRequest) -> HttpResponse:
    account = request.user
    return render(
        request,
        "signin/security.html",
        {
            "enrolled": twostep.is_enrolled(account),
            "recovery_codes_left": twostep.recovery_codes_left(account),
            "due": twostep.enrolment_due(account),
            "passkeys": passkeys.of(account),
            "sessions": sessions.active(account),
            "current_key": request.session.session_key,
            "turn_off_form": PasswordConfirmForm(account=account),
        },
    )


@login_required
@require_POST
def two_step_start(request: AuthenticatedRequest) -> HttpResponse:
    twostep.start_enrolment(request.user)
    return redirect("two_step_setup")


@login_required
@never_cache
@sensitive_post_parameters("code")
def two_step_setup(request: AuthenticatedRequest) -> HttpResponse:
    """The QR code and key of the new authenticator, and the first code that confirms it."""
    device = twostep.pending_enrolment(request.user)
    if device is None:
        return redirect("security")
    form = ConfirmAuthenticatorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if twostep.confirm_enrolment(device, form.cleaned_data["code"]):
            otp_login(request, device)
            codes = twostep.new_recovery_codes(request.user)
            messages.success(request, _("Two-step verification is on."))
            return _show_recovery_codes(request, codes)
        form.add_error(
            "code", _("That code does not match. Check the app's clock and try the next code.")
        )
    return render(
        request,
        "signin/two_step_setup.html",
        {
            "form": form,
            "qr_code": twostep.qr_code_data_uri(device),
            "secret": twostep.secret_text(device),
        },
    )


@login_required
@never_cache  # the page shows the codes: no browser or proxy may keep a copy
def recovery_codes(request: AuthenticatedRequest) -> HttpResponse:
    """POST: replace the recovery codes. GET: show the new ones, once."""
    if request.method == "POST":
        if not twostep.is_enrolled(request.user):
            return redirect("security")
        codes = twostep.new_recovery_codes(request.user)
        messages.success(request, _("New recovery codes made; the old ones no longer work."))
        return _show_recovery_codes(request, codes)
    codes = request.session.pop(RECOVERY_CODES_KEY, None)
    if not codes:  # shown already: a reload makes no new ones
        return redirect("security")
    return render(request, "signin/recovery_codes.html", {"codes": codes})


def _show_recovery_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    # They ride in the session to the page this redirects to, which removes them: shown once,
    # and reloading that page cannot make a new set (post/redirect/get).
    request.session[RECOVERY_CODES_KEY] = codes
    return redirect("recovery_codes")


@login_required
@require_POST
@sensitive_post_parameters("password")
def two_step_off(request: AuthenticatedRequest) -> HttpResponse:
    form = PasswordConfirmForm(request.POST, account=request.user)
    if not form.is_valid():
        messages.error(request, _("Two-step verification is still on: that is not your password."))
        return redirect("security")
    twostep.turn_off(request.user)
    ended = sessions.end_others(request)
    messages.success(
        request,
        ngettext(
            "Two-step verification is off. %(count)d other session was signed out.",
            "Two-step verification is off. %(count)d other sessions were signed out.",
            ended,
        )
        % {"count": ended},
    )
    return redirect("security")


@login_required
@require_POST
def passkey_remove(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    passkey = get_object_or_404(passkeys.of(request.user), pk=pk)
    passkey.delete()
    messages.success(request, _("The passkey “%(name)s” is removed.") % {"name": passkey.name})
    return redirect("security")


@login_required
@require_POST
def session_end(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    session = get_object_or_404(ConsoleSession.objects.for_account(request.user), pk=pk)
    if session.session_key == request.session.session_key:
        return logout(request)  # ending this browser's own session is signing out
    sessions.end(ConsoleSession.objects.filter(pk=session.pk))
    messages.success(request, _("That session is signed out."))
    return redirect("security")


@login_required
@require_POST
def sign_out_everywhere(request: AuthenticatedRequest) -> HttpResponse:
    """End every session of the account, this one too."""
    sessions.end_others(request)
    return logout(request)


@login_required
@sensitive_post_parameters()
def password_change(request: AuthenticatedRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        old_key = request.session.session_key
        update_session_auth_hash(request, form.user)  # this browser stays signed in
        sessions.rekeyed(request, old_key)
        ended = sessions.end_others(request)
        messages.success(
            request,
            ngettext(
                "Your password is changed. %(count)d other session was signed out.",
                "Your password is changed. %(count)d other sessions were signed out.",
                ended,
            )
            % {"count": ended},
        )
        return redirect("security")
    return render(request, "signin/password_change.html", {"form": form})


# --- the admin's sign-in page of a domain -----------------------------------------------------


@login_required
def domain_sign_in(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    if request.method == "POST":
        form = TwoStepRequirementForm(request.POST)
        if form.is_valid():
            twostep.set_requirement(domain, form.cleaned_data["require_two_step_for_admins"])
            messages.success(request, _("Sign-in settings saved."))
            return redirect("domain_sign_in", pk=domain.pk)
    else:
        form = TwoStepRequirementForm(
            initial={"require_two_step_for_admins": domain.require_two_step_for_admins}
        )
    failures = lockout.failed_sign_ins(domain)
    before = request.GET.get("before", "")
    if before.isdigit():
        failures = failures.filter(id__lt=int(before))
    page = list(failures[: FAILURES_PAGE + 1])
    admins = [(admin, twostep.is_enrolled(admin)) for admin in domain.admins.order_by("email")]
    return render(
        request,
        "signin/domain_sign_in.html",
        {
            "domain": domain,
            "form": form,
            "admins": admins,
            "by_login": lockout.recent_failures_by_login(domain),
            "failures": page[:FAILURES_PAGE],
            "older": page[FAILURES_PAGE - 1].id if len(page) > FAILURES_PAGE else None,
            "max_failures": settings.SENDGATE_LOGIN_MAX_FAILURES,
            "lockout_minutes": settings.SENDGATE_LOGIN_LOCKOUT_MINUTES,
            "grace_days": settings.SENDGATE_TWO_STEP_GRACE_DAYS,
        },
    )


@login_required
@require_POST
def domain_unlock(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Lift the lockout of one login name of this domain."""
    domain = get_domain_for_admin(request, pk)
    login = request.POST.get("login", "").strip().lower()
    if not login.endswith("@" + domain.name):
        raise Http404
    lockout.unlock(login)
    messages.success(request, _("%(login)s may sign in again.") % {"login": login})
    return redirect("domain_sign_in", pk=domain.pk)
