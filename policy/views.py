"""The domain admin's policy pages: the OU tree with effective values, saves, progress, audit."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from directory.access import (
    AuthenticatedRequest,
    get_domain_for_admin,
    get_unit_for_admin,
    require_domain_admin,
)
from directory.models import Account, Domain
from mailkit.paging import capped_count, keyset_page

from .forms import AuditFilterForm, DomainPolicyForm, UnitPolicyForm
from .models import PolicyChange, Setting, UnitOverride
from .service import current_policy, set_domain_policy, set_unit_policy, tree_branch, tree_root


@login_required
def domain_list(request: AuthenticatedRequest) -> HttpResponse:
    require_domain_admin(request)
    domains = (
        Domain.objects.for_admin(request.user)
        .select_related("outbound_policy")
        .annotate(signing_keys=Count("dkim_keys", filter=Q(dkim_keys__state="active")))
    )
    # An operator sees every hosted domain: a list that grows, paged by name.
    page = keyset_page(domains, request.GET, order=("name", "id"))
    return render(request, "policy/domain_list.html", {"domains": page})


def _saved_message(request: HttpRequest, change: PolicyChange | None) -> None:
    if change is None:
        messages.info(request, _("Nothing changed."))
    else:
        messages.success(request, _("Saved. Applying the new setting to every affected account."))


@login_required
@require_POST
def direct_delivery_tls(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Whether direct delivery to recipients' MX hosts may fall back to plaintext."""
    domain = get_domain_for_admin(request, pk)
    domain.require_tls_direct = request.POST.get("require_tls_direct") == "1"
    domain.save(update_fields=["require_tls_direct"])
    messages.success(request, _("Direct delivery settings saved."))
    return redirect("domain_policy", pk=domain.pk)


@login_required
def domain_policy(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    policy = current_policy(domain)
    if request.method == "POST":
        form = DomainPolicyForm(request.POST)
        if form.is_valid():
            change = set_domain_policy(
                domain, form.cleaned_data["allow_user_gateways"], request.user
            )
            _saved_message(request, change)
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
            "tree": tree_root(domain, show=_int(request.GET.get("open"))),
            **progress_context(domain),
        },
    )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@login_required
@require_GET
def policy_branch(request: AuthenticatedRequest, pk: int, unit_pk: int) -> HttpResponse:
    """htmx partial: one OU of the policy tree, opened on its sub-OUs or closed; or, with
    ``after``, the sub-OUs that follow that one."""
    unit = get_unit_for_admin(request, pk, unit_pk)
    if not request.htmx:  # opened as a page: the tree, opened down to this OU
        return redirect(f"{reverse('domain_policy', args=[unit.domain_id])}?open={unit.pk}")
    after = _int(request.GET.get("after"))
    node = tree_branch(unit, open=request.GET.get("open") == "1" or after is not None, after=after)
    # "Show more": only the next sub-OUs, in place of the button.
    template = "unit_children.html" if after is not None else "unit_node.html"
    return render(request, f"policy/partials/{template}", {"domain": unit.domain, "node": node})


@login_required
def unit_policy(request: AuthenticatedRequest, pk: int, unit_pk: int) -> HttpResponse:
    """GET: one OU's setting form (loaded on demand by the tree). POST: save its override.

    The root OU is saved through the domain form.
    """
    unit = get_unit_for_admin(request, pk, unit_pk)
    if request.method == "GET" and not request.htmx:  # opened as a page: the tree at this OU
        return redirect(f"{reverse('domain_policy', args=[unit.domain_id])}?open={unit.pk}")
    if request.method == "GET":
        override = UnitOverride.objects.filter(org_unit=unit).first()
        form = UnitPolicyForm(
            initial={"setting": Setting.of(override.allow if override else None)},
            prefix=f"unit{unit.pk}",
        )
        return render(
            request,
            "policy/partials/unit_policy_form.html",
            {"domain": unit.domain, "unit": unit, "form": form},
        )
    form = UnitPolicyForm(request.POST, prefix=f"unit{unit.pk}")
    if unit.is_root or not form.is_valid():
        messages.error(
            request, _("Choose Inherit, Allowed or Not allowed for an OU below the top.")
        )
    else:
        change = set_unit_policy(unit, Setting(form.cleaned_data["setting"]), request.user)
        _saved_message(request, change)
    # Back to the tree, opened down to this OU.
    return redirect(f"{reverse('domain_policy', args=[unit.domain_id])}?open={unit.pk}")


# The policy page's "Recent changes"; the audit log pages through them all.
RECENT_CHANGES = 10


def progress_context(domain: Domain) -> dict:
    """The latest change, and any older one still running (a save elsewhere in the tree)."""
    latest = domain.policy_changes.first()
    running = domain.policy_changes.filter(finished_at__isnull=True, superseded=False)
    if latest:
        running = running.exclude(pk=latest.pk)
    shown = ([latest] if latest else []) + list(running)
    return {
        "domain": domain,
        # "Recent changes" reads the same rows as the progress line, so both show one count.
        "changes": domain.policy_changes.all()[:RECENT_CHANGES],
        "progress_changes": shown,
        "propagating": any(change.is_propagating for change in shown),
    }


@login_required
def propagation_progress(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """htmx partial: propagation progress; polling stops once everything has been applied."""
    domain = get_domain_for_admin(request, pk)
    # The change table rides along out of band: its row must not stay at "0 of 2" once the
    # progress line says everything was applied.
    context = {**progress_context(domain), "swap_oob": True}
    return render(request, "policy/partials/progress.html", context)


# Account, admin and gateway events: the latest ones (the policy changes above are paged).
RECENT_EVENTS = 50


@login_required
def audit_log(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Every recorded change of the domain, newest first, filterable by OU and by admin."""
    domain = get_domain_for_admin(request, pk)
    actor_ids = domain.policy_changes.exclude(actor=None).values_list("actor", flat=True)
    actors = Account.objects.filter(pk__in=actor_ids).order_by("email")
    form = AuditFilterForm(
        request.GET or None,
        domain_id=domain.pk,
        actor_choices=[(a.pk, a.email) for a in actors],
    )
    changes = domain.policy_changes.all()
    if form.is_valid():
        if form.cleaned_data["unit"]:
            changes = changes.filter(org_unit=form.cleaned_data["unit"])
        if form.cleaned_data["actor"]:
            changes = changes.filter(actor_id=form.cleaned_data["actor"])
    return render(
        request,
        "policy/audit_log.html",
        {
            "domain": domain,
            "form": form,
            "changes": keyset_page(changes, request.GET),
            "total": capped_count(changes),
            "events": domain.audit_events.all()[:RECENT_EVENTS],
            "recent_events": RECENT_EVENTS,
        },
    )
