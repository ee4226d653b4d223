"""The end user's send-as pages."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailkit import dns
from mailkit.addresses import domain_of, normalize_address
from outbound.intake import accept_message
from outbound.routing import RouteKind, route_for

from . import deliverability
from .access import get_alias_for_user
from .connection_test import TooManyTests, run_connection_test
from .forms import AliasForm, ConfirmAliasForm, SmtpServerForm
from .models import SendAsAlias, SmtpServer
from .oauth_views import begin_sign_in, provider_choices


def _server_form(request: HttpRequest, server: SmtpServer | None = None) -> SmtpServerForm | None:
    """The SMTP fields, offered only while the account's policy allows per-user gateways."""
    if not request.user.gateways_allowed:
        return None
    return SmtpServerForm(request.POST or None, instance=server)


def _tested(
    request, form: SmtpServerForm, server: SmtpServer, mail_from: str, transcript: list[str]
) -> bool:
    """Run the connection test for ``server``; put its verdict on the form it came from."""
    try:
        outcome = run_connection_test(request.user, server, mail_from)
    except TooManyTests:
        form.add_error(None, _("Too many connection tests in the last hour. Try again later."))
        return False
    transcript.extend(outcome.transcript)
    if not outcome.ok:
        form.add_error("smtp_host", outcome.error)
    return outcome.ok


@login_required
def alias_list(request: HttpRequest) -> HttpResponse:
    account = request.user
    transcript: list[str] = []
    form = AliasForm(request.POST or None, account=account)
    server_form = _server_form(request)
    providers = provider_choices(account)
    if (
        request.method == "POST"
        and form.is_valid()
        and (server_form is None or server_form.is_valid())
    ):
        alias = form.alias()
        sign_in = request.POST.get("sign_in", "")
        if sign_in and sign_in in dict(providers):
            # "Add and sign in with …": the alias first, its server after the consent page.
            _create_alias(alias, None)
            return begin_sign_in(request, alias, sign_in)
        server = server_form.server() if server_form else None
        if server is None or _tested(request, server_form, server, alias.address, transcript):
            _create_alias(alias, server)
            messages.success(
                request,
                _(
                    "We sent a confirmation code to %(address)s. Enter it below to start sending "
                    "as this address."
                )
                % {"address": alias.address},
            )
            return redirect("alias_confirm", pk=alias.pk)
    return render(
        request,
        "gateways/alias_list.html",
        {
            "form": form,
            "server_form": server_form,
            "aliases": account.aliases.select_related("smtp_server"),
            "transcript": transcript,
            "oauth_providers": providers,
        },
    )


def _create_alias(alias: SendAsAlias, server: SmtpServer | None) -> None:
    with transaction.atomic():
        if server is not None:
            server.save()
            alias.smtp_server = server
        alias.save()
        _send_confirmation(alias)


def _send_confirmation(alias: SendAsAlias) -> None:
    code = alias.new_confirmation_code()
    alias.save(
        update_fields=["confirmation_digest", "confirmation_sent_at", "confirmation_failures"]
    )
    account = alias.account
    link = (
        settings.SENDGATE_CONSOLE_URL.rstrip("/")
        + reverse("alias_confirm", args=[alias.pk])
        + f"?code={code}"
    )
    body = _(
        "%(primary)s asked to send mail as %(address)s through Sendgate.\n\n"
        "Confirmation code: %(code)s\n"
        "Or open this link while logged in: %(link)s\n\n"
        "The code is valid for %(hours)s hours. If you did not ask for this, ignore this "
        "message: nothing will be sent as this address."
    ) % {
        "primary": account.email,
        "address": alias.address,
        "code": code,
        "link": link,
        "hours": settings.SENDGATE_CONFIRMATION_HOURS,
    }
    subject = _("Confirm sending as %(address)s") % {"address": alias.address}
    accept_message(account, account.email, [alias.address], subject, body)


@login_required
def alias_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    # The link in the mail fills the code in; confirming is still a POST (no state change on GET).
    form = ConfirmAliasForm(request.POST or None, initial={"code": request.GET.get("code", "")})
    if request.method == "POST" and form.is_valid():
        valid_for = timedelta(hours=settings.SENDGATE_CONFIRMATION_HOURS)
        with transaction.atomic():
            result = alias.confirm(form.cleaned_data["code"], valid_for)
            alias.save(update_fields=["state", "confirmation_digest", "confirmation_failures"])
        if result == SendAsAlias.Confirmation.CONFIRMED:
            messages.success(request, _("%(address)s is confirmed.") % {"address": alias.address})
            return redirect("alias_list")
        form.add_error("code", result.label)
    return render(request, "gateways/alias_confirm.html", {"alias": alias, "form": form})


@login_required
@require_POST
def alias_resend(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    if not alias.is_verified:
        with transaction.atomic():
            _send_confirmation(alias)
        messages.success(
            request, _("A new code is on its way to %(address)s.") % {"address": alias.address}
        )
    return redirect("alias_confirm", pk=alias.pk)


@login_required
def alias_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit name, reply-to and the SMTP server; a changed server is tested before it is saved."""
    alias = get_alias_for_user(request, pk)
    form = AliasForm(request.POST or None, account=request.user, alias=alias)
    server_form = _server_form(request, alias.smtp_server)
    transcript: list[str] = []
    if (
        request.method == "POST"
        and form.is_valid()
        and (server_form is None or server_form.is_valid())
    ):
        server = server_form.server() if server_form else alias.smtp_server
        changed = (
            server_form is not None
            and server is not None
            and (server_form.has_changed() or server.is_paused or not server.last_test_ok)
        )
        if not changed or _tested(request, server_form, server, alias.address, transcript):
            _save_edit(form.alias(), server, server_form is not None)
            messages.success(request, _("%(address)s is saved.") % {"address": alias.address})
            return redirect("alias_list")
    return render(
        request,
        "gateways/alias_edit.html",
        {
            "alias": alias,
            "form": form,
            "server_form": server_form,
            "transcript": transcript,
            "oauth_providers": provider_choices(request.user),
        },
    )


def _save_edit(alias: SendAsAlias, server: SmtpServer | None, server_editable: bool) -> None:
    with transaction.atomic():
        old = alias.smtp_server
        if server_editable and server is None and old is not None:
            alias.smtp_server = None  # the user removed the server: its password goes too
            alias.save()
            old.delete()
            return
        if server is not None:
            if server.last_test_ok:
                server.resume()  # a fresh successful test ends a pause after a refused password
            server.save()
            alias.smtp_server = server
        alias.save()


@login_required
@require_POST
def alias_make_default(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    if not alias.is_verified:
        raise Http404
    with transaction.atomic():
        request.user.aliases.filter(is_default=True).update(is_default=False)
        alias.is_default = True
        alias.save(update_fields=["is_default"])
    messages.success(
        request, _("New mail is now from %(address)s by default.") % {"address": alias.address}
    )
    return redirect("alias_list")


@login_required
@require_POST
def reply_preference(request: HttpRequest) -> HttpResponse:
    account = request.user
    account.reply_from_received_address = request.POST.get("reply_from_received_address") == "1"
    account.save(update_fields=["reply_from_received_address"])
    messages.success(request, _("Your reply preference is saved."))
    return redirect("alias_list")


@login_required
def alias_delete(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    if request.method == "POST":
        with transaction.atomic():
            server = alias.smtp_server
            alias.delete()
            if server is not None:
                server.delete()  # the stored credentials go with the alias
        messages.success(request, _("%(address)s was removed.") % {"address": alias.address})
        return redirect("alias_list")
    return render(request, "gateways/alias_delete.html", {"alias": alias})


@login_required
def alias_deliverability(request: HttpRequest, pk: int) -> HttpResponse:
    """SPF and DMARC for the alias's domain, per path; loaded lazily into the send-as list."""
    alias = get_alias_for_user(request, pk)
    account = request.user
    # Which path mail as this alias takes today: asked of the one routing function.
    route = route_for(account, alias.address, alias)
    server = alias.smtp_server
    hints = deliverability.assess(
        alias_domain=domain_of(alias.address),
        envelope_domain=domain_of(account.email),
        org_name=account.domain.name if account.domain else domain_of(account.email),
        gateway_host=server.host if server else None,
        using_gateway=route.kind == RouteKind.USER_GATEWAY,
        resolver=dns.default_resolver(),
    )
    template = (
        "gateways/partials/deliverability.html"
        if request.htmx
        else "gateways/alias_deliverability.html"
    )
    return render(request, template, {"alias": alias, "hints": hints})


@login_required
def srv_lookup(request: HttpRequest) -> HttpResponse:
    """Suggest the submission server an address's domain announces (RFC 6186)."""
    try:
        domain = domain_of(normalize_address(request.GET.get("address", "")))
    except ValidationError:
        return HttpResponse("")  # nothing to suggest until the address is whole
    lookup = dns.submission_servers(domain, dns.default_resolver())
    return render(
        request, "gateways/partials/srv_suggestion.html", {"domain": domain, "lookup": lookup}
    )
