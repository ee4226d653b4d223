"""Sign in with Microsoft, Google (or the operator's own provider) for an alias's SMTP server.

The flow is bound to the user's session: ``start`` keeps the state, alias and PKCE verifier there;
the callback accepts only a state from that session (used once, for a limited time), re-reads the
alias through the access helper (another user's alias is a 404), trades the code for tokens, runs
the same probe as a password server's connection test (here, in the request: the tokens are not
stored anywhere before they pass), and saves only what passed it, through gateways.server_state.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from directory.access import AuthenticatedRequest
from mailkit import oauth
from mailkit.addresses import normalize_address

from . import server_state
from .access import get_alias_for_user
from .connection_test import TooManyTests, run_connection_test
from .models import SendAsAlias, SmtpServer

SESSION_KEY = "sendgate_oauth_pending"
FLOW_SECONDS = 600  # a consent page left open longer than this must be started again
MAX_PENDING = 5


def provider_choices(account) -> list[tuple[str, str]]:
    """(key, name) of the sign-in buttons to show, only where per-user gateways are allowed."""
    if not account.gateways_allowed:
        return []
    return [(p.key, p.name) for p in oauth.configured_providers().values()]


def allow_sign_in_forms(response: HttpResponse, providers: list[tuple[str, str]]) -> HttpResponse:
    """Let a page's sign-in buttons reach the providers' consent pages: the button's POST is
    answered with a redirect there, and browsers hold that redirect to the page's CSP
    ``form-action`` (otherwise only the console itself)."""
    configured = oauth.configured_providers()
    origins = sorted(
        {_origin(configured[key].authorize_url) for key, _name in providers if key in configured}
    )
    if origins:
        # django-csp's middleware reads this attribute (its documented per-response update).
        response._csp_update = {"form-action": origins}  # type: ignore[attr-defined]
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def redirect_uri() -> str:
    """The one callback URL the operator registers with every provider."""
    return settings.SENDGATE_CONSOLE_URL.rstrip("/") + reverse("oauth_callback")


def begin_sign_in(
    request: AuthenticatedRequest, alias: SendAsAlias, provider_key: str, mailbox: str = ""
) -> HttpResponse:
    """Send the user to the provider's consent page for ``alias``, to sign in as ``mailbox``
    (the alias address when empty: a shared mailbox is sent as by a person's own sign-in)."""
    provider = oauth.configured_providers().get(provider_key)
    if provider is None or not request.user.gateways_allowed:
        raise Http404
    mailbox = mailbox or alias.address
    consent = oauth.start_consent(provider, redirect_uri(), login_hint=mailbox)
    pending = {
        state: flow
        for state, flow in request.session.get(SESSION_KEY, {}).items()
        if time.time() - flow["started"] < FLOW_SECONDS
    }
    pending[consent.state] = {
        "alias": alias.pk,
        "provider": provider.key,
        "verifier": consent.code_verifier,
        "mailbox": mailbox,
        "started": time.time(),
    }
    request.session[SESSION_KEY] = dict(list(pending.items())[-MAX_PENDING:])
    return redirect(consent.url)


@login_required
@require_POST
def alias_sign_in(request: AuthenticatedRequest, pk: int, provider: str) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    typed = request.POST.get("mailbox", "").strip()
    try:
        mailbox = normalize_address(typed) if typed else ""
    except ValidationError as exc:
        messages.error(
            request,
            _("The mailbox to sign in with is not valid: %(reason)s") % {"reason": exc.messages[0]},
        )
        return redirect("alias_edit", pk=alias.pk)
    return begin_sign_in(request, alias, provider, mailbox)


@login_required
def oauth_callback(request: AuthenticatedRequest) -> HttpResponse:
    pending = request.session.get(SESSION_KEY, {})
    flow = pending.pop(request.GET.get("state", ""), None)  # a state works once
    request.session[SESSION_KEY] = pending
    if flow is None or time.time() - flow["started"] > FLOW_SECONDS:
        return render(request, "gateways/oauth_failed.html", status=400)
    alias = get_alias_for_user(request, flow["alias"])
    edit = redirect("alias_edit", pk=alias.pk)
    if request.GET.get("error"):
        messages.error(
            request,
            _("The sign-in was not completed: %(reason)s")
            % {"reason": request.GET.get("error_description") or request.GET["error"]},
        )
        return edit
    provider = oauth.configured_providers().get(flow["provider"])
    if provider is None or not request.user.gateways_allowed:
        raise Http404
    try:
        tokens = oauth.exchange_code(
            provider, redirect_uri(), request.GET.get("code", ""), flow["verifier"]
        )
    except oauth.TokenError as exc:
        messages.error(request, exc.message)
        return edit
    # Test an unsaved copy: a server that fails keeps whatever it had before.
    candidate = SmtpServer(
        host=provider.smtp_host,
        port=provider.smtp_port,
        security=provider.smtp_security.value,
        username=flow["mailbox"],
    )
    candidate.sign_in(provider.key, tokens)
    try:
        outcome = run_connection_test(request.user, candidate, alias.address)
    except TooManyTests:
        messages.error(request, _("Too many connection tests in the last hour. Try again later."))
        return edit
    if not outcome.ok:
        return render(
            request,
            "gateways/oauth_failed.html",
            {"alias": alias, "error": outcome.error, "transcript": outcome.transcript},
        )
    _connect(alias, candidate)
    messages.success(
        request,
        _("%(address)s now sends through %(host)s, signed in with %(provider)s.")
        % {"address": alias.address, "host": candidate.host, "provider": provider.name},
    )
    if not alias.is_verified:
        return redirect("alias_confirm", pk=alias.pk)
    return redirect("alias_list")


def _connect(alias: SendAsAlias, tested: SmtpServer) -> None:
    """Save the tested server on the alias. Signing in (again) is a passing connection test
    (gateways.server_state): it ends any pause, and the mail that waited goes out now."""
    with transaction.atomic():
        server = alias.smtp_server or SmtpServer()
        for name in (
            "host",
            "port",
            "security",
            "username",
            "password",
            "oauth_provider",
            "oauth_refresh_token",
            "oauth_access_token",
            "oauth_expires_at",
        ):
            setattr(server, name, getattr(tested, name))
        server_state.passed_test(server, tested.last_test_summary)
        server.save()
        alias.smtp_server = server
        alias.save(update_fields=["smtp_server"])
        server_state.release_mail(alias)
