"""The end user's send-as pages."""

from __future__ import annotations

import asyncio

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from outbound.delivery import route_for
from outbound.intake import accept_message
from outbound.models import Message
from outbound.routing import RouteKind

from . import deliverability, dns
from .access import get_alias_for_user
from .addresses import domain_of, normalize_address
from .forms import AliasForm, ConfirmAliasForm
from .models import SendAsAlias
from .smtp import run_session


@login_required
def alias_list(request: HttpRequest) -> HttpResponse:
    account = request.user
    transcript: list[str] = []
    if request.method == "POST":
        form = AliasForm(request.POST, account=account)
        if form.is_valid():
            server = form.smtp_server()
            alias = form.alias()
            if server is not None:
                outcome = asyncio.run(run_session(server.target(), mail_from=alias.address))
                transcript = outcome.transcript
                if not outcome.ok:
                    form.add_error("smtp_host", outcome.error)
                else:
                    server.record_test(True, outcome.reply)
            if form.is_valid():
                _create_alias(alias, server)
                messages.success(
                    request,
                    _(
                        "We sent a confirmation code to %(address)s. Enter it below to start "
                        "sending as this address."
                    )
                    % {"address": alias.address},
                )
                return redirect("alias_confirm", pk=alias.pk)
    else:
        form = AliasForm(account=account)
    return render(
        request,
        "gateways/alias_list.html",
        {
            "form": form,
            "aliases": account.aliases.select_related("smtp_server"),
            "transcript": transcript,
        },
    )


def _create_alias(alias: SendAsAlias, server) -> None:
    with transaction.atomic():
        if server is not None:
            server.save()
            alias.smtp_server = server
        alias.save()
        _send_confirmation(alias)


def _send_confirmation(alias: SendAsAlias) -> None:
    code = alias.new_confirmation_code()
    alias.save(update_fields=["confirmation_digest"])
    account = alias.account
    body = _(
        "%(primary)s asked to send mail as %(address)s through Sendgate.\n\n"
        "Confirmation code: %(code)s\n\n"
        "If you did not ask for this, ignore this message: nothing will be sent as this address."
    ) % {"primary": account.email, "address": alias.address, "code": code}
    accept_message(
        account,
        account.email,
        [alias.address],
        _("Confirm sending as %(address)s") % {"address": alias.address},
        body,
    )


@login_required
def alias_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    form = ConfirmAliasForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if alias.confirm(form.cleaned_data["code"]):
                alias.save(update_fields=["state", "confirmation_digest"])
                messages.success(
                    request, _("%(address)s is confirmed.") % {"address": alias.address}
                )
                return redirect("alias_list")
        form.add_error("code", _("That code is not right. Check the latest confirmation mail."))
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
    route = route_for(Message(account=account, from_address=alias.address), alias)
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
