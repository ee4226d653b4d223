"""The domain admin's policy pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from gateways.access import get_domain_for_admin, require_domain_admin
from gateways.models import Domain

from .forms import DomainPolicyForm
from .service import current_policy, set_domain_policy


@login_required
def domain_list(request: HttpRequest) -> HttpResponse:
    require_domain_admin(request)
    domains = Domain.objects.for_admin(request.user).select_related("outbound_policy")
    return render(request, "policy/domain_list.html", {"domains": domains})


@login_required
def domain_policy(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    policy = current_policy(domain)
    if request.method == "POST":
        form = DomainPolicyForm(request.POST)
        if form.is_valid():
            change = set_domain_policy(
                domain, form.cleaned_data["allow_user_gateways"], request.user
            )
            if change is None:
                messages.info(request, _("Nothing changed."))
            else:
                messages.success(request, _("Saved. Applying the new setting to every account."))
            return redirect("domain_policy", pk=domain.pk)
    else:
        form = DomainPolicyForm(
            initial={"allow_user_gateways": "1" if policy.allow_user_gateways else "0"}
        )
    return render(
        request,
        "policy/domain_policy.html",
        {
            "domain": domain,
            "policy": policy,
            "form": form,
            "changes": domain.policy_changes.all()[:20],
        },
    )


@login_required
def propagation_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx partial: the latest change's progress; polling stops once it has been applied."""
    domain = get_domain_for_admin(request, pk)
    change = domain.policy_changes.first()
    return render(request, "policy/partials/progress.html", {"domain": domain, "change": change})
