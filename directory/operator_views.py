"""The operator's pages (superusers): every domain, adding one, its ownership, queue and admins."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from mailkit.dns import Status
from outbox import onboarding
from outbox.models import Message

from .access import AuthenticatedRequest, require_operator
from .accounts import DirectoryError
from .models import Domain
from .verification import check_ownership


class DomainAddForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Domain name"), max_length=253)
    admin = forms.CharField(
        label=gettext_lazy("First admin's address"),
        max_length=254,
        help_text=gettext_lazy("An address in the new domain; it gets an invitation."),
    )
    admin_name = forms.CharField(label=gettext_lazy("Admin's name"), max_length=200, required=False)


@login_required
def operator_domains(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request)
    domains = Domain.objects.annotate(account_count=Count("accounts")).prefetch_related("admins")
    waiting = dict(
        Message.objects.waiting()
        .values_list("account__domain")
        .annotate(n=Count("pk"))
        .values_list("account__domain", "n")
    )
    rows = [(d, waiting.get(d.pk, 0)) for d in domains]
    return render(request, "directory/operator_domains.html", {"rows": rows})


@login_required
def operator_domain_add(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request)
    form = DomainAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            domain, admin = onboarding.create_domain(
                data["name"],
                data["admin"],
                verified=False,
                actor=request.user,
                admin_name=data["admin_name"],
            )
        except DirectoryError as exc:
            form.add_error(None, str(exc))
        else:
            onboarding.send_invitation(admin, request.user)
            messages.success(
                request,
                _(
                    "%(domain)s is added and %(address)s is invited. It cannot send until its "
                    "DNS record below is found."
                )
                % {"domain": domain.name, "address": admin.email},
            )
            return redirect("operator_domain", pk=domain.pk)
    return render(request, "directory/operator_domain_add.html", {"form": form})


def _operator_domain(request: AuthenticatedRequest, pk: int) -> Domain:
    require_operator(request)
    return get_object_or_404(Domain, pk=pk)


@login_required
def operator_domain(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _operator_domain(request, pk)
    states = dict(
        Message.objects.filter(account__domain=domain)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    queue = [(label, states.get(value, 0)) for value, label in Message.State.choices]
    return render(
        request,
        "directory/operator_domain.html",
        {
            "domain": domain,
            "queue": queue,
            "admins": domain.admins.order_by("email"),
            "account_count": domain.accounts.count(),
        },
    )


@login_required
@require_POST
def operator_domain_verify(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _operator_domain(request, pk)
    status = check_ownership(domain, request.user)
    if status == Status.FOUND:
        messages.success(request, _("%(domain)s is verified.") % {"domain": domain.name})
    elif status == Status.UNKNOWN:
        messages.error(request, _("DNS did not answer. Try again in a minute."))
    else:
        messages.error(
            request,
            _("The TXT record is not there yet. DNS changes can take a while to appear."),
        )
    return redirect("operator_domain", pk=domain.pk)
