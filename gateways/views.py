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
from django_htmx.http import HttpResponseClientRedirect

from directory.access import AuthenticatedRequest
from domainkeys.models import DkimKey
from mailkit import dns
from mailkit.addresses import domain_of, normalize_address
from outbound.routing import RouteKind, route_for
from outbox import notices

from . import connection_test, deliverability, deliverability_checks, server_state
from .access import get_alias_for_user, get_connection_test_for_user
from .connection_test import TooManyTests, start_test
from .forms import AliasForm, ConfirmAliasForm, SmtpServerForm
from .models import ConnectionTest, SendAsAlias, SmtpServer
from .oauth_views import allow_sign_in_forms, begin_sign_in, provider_choices


def _server_form(
    request: AuthenticatedRequest,
    server: SmtpServer | None = None,
    test: ConnectionTest | None = None,
) -> SmtpServerForm | None:
    """The SMTP fields, offered only while the account's policy allows per-user gateways."""
    if not request.user.gateways_allowed:
        return None
    initial = {}
    if test is not None:  # what was tested, to correct it (the password is never shown back)
        initial["initial"] = {
            "smtp_host": test.host,
            "smtp_port": test.port,
            "smtp_security": test.security,
            "smtp_username": test.username,
        }
    return SmtpServerForm(request.POST or None, instance=server, **initial)


def _shown_test(request: HttpRequest) -> ConnectionTest | None:
    """The connection test the page shows (``?test=``), if it is the requester's."""
    pk = request.GET.get("test", "")
    if not pk.isdigit():
        return None
    return connection_test.give_up_if_lost(get_connection_test_for_user(request, int(pk)))


def _alias_initial(test: ConnectionTest | None) -> dict:
    """Form keyword arguments that show what was tested (none: the form's own defaults)."""
    if test is None:
        return {}
    fields = ("address", "display_name", "reply_to", "treat_as_alias")
    return {"initial": {name: getattr(test, name) for name in fields}}


def _alias_fields(alias: SendAsAlias) -> dict:
    return {
        "address": alias.address,
        "display_name": alias.display_name,
        "reply_to": alias.reply_to,
        "treat_as_alias": alias.treat_as_alias,
    }


def _start_test(
    request: AuthenticatedRequest,
    form: AliasForm,
    server: SmtpServer,
    alias: SendAsAlias,
    editing: bool,
) -> ConnectionTest | None:
    """Hand the connection test to a worker; None (and the reason on the form) if refused."""
    try:
        return start_test(request.user, server, alias if editing else None, _alias_fields(alias))
    except TooManyTests:
        form.add_error(None, _("Too many connection tests in the last hour. Try again later."))
        return None


@login_required
def alias_list(request: AuthenticatedRequest) -> HttpResponse:
    account = request.user
    test = _shown_test(request)
    form = AliasForm(request.POST or None, account=account, **_alias_initial(test))
    server_form = _server_form(request, test=test)
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
        if server is None:
            _create_alias(alias, None)
            _flash_code_sent(request, alias)
            return redirect("alias_confirm", pk=alias.pk)
        test = _start_test(request, form, server, alias, editing=False)
        if test is not None:
            return redirect(f"{reverse('alias_list')}?test={test.pk}")
    page = render(
        request,
        "gateways/alias_list.html",
        {
            "form": form,
            "server_form": server_form,
            "aliases": account.aliases.select_related("smtp_server"),
            "test": test,
            "submit_label": _("Add address"),
            "oauth_providers": providers,
        },
    )
    return allow_sign_in_forms(page, providers)


def _flash_code_sent(request: HttpRequest, alias: SendAsAlias) -> None:
    messages.success(
        request,
        _(
            "We sent a confirmation code to %(address)s. Enter it below to start sending "
            "as this address."
        )
        % {"address": alias.address},
    )


def _create_alias(alias: SendAsAlias, server: SmtpServer | None) -> None:
    with transaction.atomic():
        if server is not None:
            server.save()
            alias.smtp_server = server
        alias.save()
        _send_confirmation(alias)


@login_required
def connection_test_status(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Polled while a connection test runs; once it passed, the change it tested is saved."""
    test = connection_test.give_up_if_lost(get_connection_test_for_user(request, pk))
    if test.state == ConnectionTest.State.PASSED:
        goto = _save_tested_change(request, test)
        return HttpResponseClientRedirect(goto) if request.htmx else redirect(goto)
    if not request.htmx:  # without JavaScript: the form page, with the result under it
        page = (
            reverse("alias_edit", args=[test.alias_id]) if test.alias_id else reverse("alias_list")
        )
        return redirect(f"{page}?test={test.pk}")
    label = _("Save") if test.alias_id else _("Add address")
    return render(
        request, "gateways/partials/connection_test.html", {"test": test, "submit_label": label}
    )


def _save_tested_change(request: AuthenticatedRequest, test: ConnectionTest) -> str:
    """Save the alias change a passed test tested (once, whoever polls first); where to go next."""
    with transaction.atomic():
        if not connection_test.claim_passed(test):
            pass  # saved already (another poll, another tab)
        elif not request.user.gateways_allowed:
            messages.error(
                request,
                _(
                    "Your administrator turned off per-user outbound gateways meanwhile; "
                    "nothing was saved."
                ),
            )
        elif test.alias is not None:
            alias = test.alias
            alias.display_name, alias.reply_to = test.display_name, test.reply_to
            alias.treat_as_alias = test.treat_as_alias
            server = connection_test.tested_server(test, alias.smtp_server)
            _save_edit(alias, server, server_editable=True, tested=True)
            messages.success(request, _("%(address)s is saved.") % {"address": alias.address})
        elif not request.user.aliases.filter(address=test.address).exists():
            alias = SendAsAlias(
                account=request.user,
                address=test.address,
                display_name=test.display_name,
                reply_to=test.reply_to,
                treat_as_alias=test.treat_as_alias,
            )
            _create_alias(alias, connection_test.tested_server(test, None))
            _flash_code_sent(request, alias)
        connection_test.forget_password(test)
    if test.alias_id:
        return reverse("alias_list")
    created = request.user.aliases.filter(address=test.address).first()
    return reverse("alias_confirm", args=[created.pk]) if created else reverse("alias_list")


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
    # From the system address, not from the user: it is Sendgate asking, not the user writing.
    notice = notices.build_notice(account, subject, body, to=[alias.address])
    notices.send_to_sender(account, notice, to=[alias.address])


@login_required
def alias_confirm(request: AuthenticatedRequest, pk: int) -> HttpResponse:
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
def alias_resend(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    alias = get_alias_for_user(request, pk)
    if not alias.is_verified:
        try:
            with transaction.atomic():
                _send_confirmation(alias)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("alias_confirm", pk=alias.pk)
        messages.success(
            request, _("A new code is on its way to %(address)s.") % {"address": alias.address}
        )
    return redirect("alias_confirm", pk=alias.pk)


@login_required
def alias_edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Edit name, reply-to and the SMTP server; a changed server is tested before it is saved."""
    alias = get_alias_for_user(request, pk)
    test = _shown_test(request)
    if test is not None and test.alias_id != alias.pk:
        raise Http404
    form = AliasForm(
        request.POST or None, account=request.user, alias=alias, **_alias_initial(test)
    )
    server_form = _server_form(request, alias.smtp_server, test)
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
        if not changed:
            _save_edit(form.alias(), server, server_form is not None, tested=False)
            messages.success(request, _("%(address)s is saved.") % {"address": alias.address})
            return redirect("alias_list")
        assert server is not None  # changed: there is a server to test
        test = _start_test(request, form, server, form.alias(), editing=True)
        if test is not None:
            return redirect(f"{reverse('alias_edit', args=[alias.pk])}?test={test.pk}")
    providers = provider_choices(request.user)
    page = render(
        request,
        "gateways/alias_edit.html",
        {
            "alias": alias,
            "form": form,
            "server_form": server_form,
            "test": test,
            "submit_label": _("Save"),
            "oauth_providers": providers,
        },
    )
    return allow_sign_in_forms(page, providers)


def _save_edit(
    alias: SendAsAlias, server: SmtpServer | None, server_editable: bool, tested: bool
) -> None:
    """Save the alias and its server as edited. The server's state is the connection test's
    business (gateways.server_state): saving a name never ends a pause."""
    with transaction.atomic():
        old = alias.smtp_server
        if server_editable and server is None and old is not None:
            alias.smtp_server = None  # the user removed the server: its password goes too
            alias.save()
            old.delete()
            return
        if server is not None:
            server.save()
            alias.smtp_server = server
        alias.save()
        if tested:  # it passed just now: what waited for it goes at once
            server_state.release_mail(alias)


@login_required
@require_POST
def alias_make_default(request: AuthenticatedRequest, pk: int) -> HttpResponse:
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
def reply_preference(request: AuthenticatedRequest) -> HttpResponse:
    account = request.user
    account.reply_from_received_address = request.POST.get("reply_from_received_address") == "1"
    account.save(update_fields=["reply_from_received_address"])
    messages.success(request, _("Your reply preference is saved."))
    return redirect("alias_list")


@login_required
def alias_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
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
def alias_deliverability(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """SPF and DMARC for the alias's domain, per path; loaded lazily into the send-as list.

    The DNS answers come from a worker (deliverability_checks); until they are in, the partial
    says so and polls.
    """
    alias = get_alias_for_user(request, pk)
    account = request.user
    # Which path mail as this alias takes today: asked of the one routing function.
    route = route_for(account, alias.address, alias)
    # Which domain would sign it on the domain path (the route without the alias's gateway).
    signing_domain = route_for(account, alias.address, None).dkim_domain
    signed = bool(signing_domain and DkimKey.objects.active_for([signing_domain]).exists())
    server = alias.smtp_server
    alias_domain = domain_of(alias.address)
    check = deliverability_checks.requested(alias_domain, server.host if server else "")
    facts = deliverability_checks.facts_of(check)
    hints = None
    if facts is not None:
        hints = deliverability.judge(
            facts,
            alias_domain=alias_domain,
            envelope_domain=domain_of(account.email),
            org_name=account.domain.name if account.domain else domain_of(account.email),
            gateway_host=server.host if server else None,
            using_gateway=route.kind == RouteKind.USER_GATEWAY,
            dkim_domain=signing_domain if signed else None,
        )
    template = (
        "gateways/partials/deliverability.html"
        if request.htmx
        else "gateways/alias_deliverability.html"
    )
    return render(
        request,
        template,
        {
            "alias": alias,
            "hints": hints,
            # The one-line verdict: the path mail as this alias takes now.
            "verdict_hint": next((h for h in hints if h.in_use), hints[0]) if hints else None,
            "signed": signed,
            "checking": check.finished_at is None,
        },
    )


@login_required
def srv_lookup(request: AuthenticatedRequest) -> HttpResponse:
    """Suggest the submission server an address's domain announces (RFC 6186)."""
    try:
        domain = domain_of(normalize_address(request.GET.get("address", "")))
    except ValidationError:
        return HttpResponse("")  # nothing to suggest until the address is whole
    lookup = dns.submission_servers(domain, dns.default_resolver())
    return render(
        request, "gateways/partials/srv_suggestion.html", {"domain": domain, "lookup": lookup}
    )
