"""The end user's send-as pages."""

from __future__ import annotations

import asyncio

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from outbound.intake import accept_message

from .access import get_alias_for_user
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
