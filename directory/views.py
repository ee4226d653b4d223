"""The domain admin's OU pages: the tree, create, rename, move, delete, and moving accounts."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from mailkit.paging import capped_count, keyset_page
from policy.inheritance import subtree
from policy.service import (
    PolicyError,
    TreeNode,
    move_account,
    move_unit,
    tree_branch,
    tree_root,
    unit_settings,
)

from .access import AuthenticatedRequest, get_domain_for_admin, get_unit_for_admin
from .forms import AccountMoveForm, UnitCreateForm, UnitMoveForm, UnitRenameForm
from .models import Account, OrgUnit

SEARCH_RESULTS = 20
FIELD_NAME = re.compile(r"[a-z][a-z0-9_-]{0,49}")


def _count_accounts(tree: TreeNode) -> TreeNode:
    """Fill in the account count of each OU the page shows (one grouped query)."""
    nodes = tree.shown()
    counts = dict(
        Account.objects.filter(org_unit_id__in=[node.row.unit.pk for node in nodes])
        .values_list("org_unit")
        .annotate(n=Count("pk"))
        .values_list("org_unit", "n")
        .order_by()
    )
    for node in nodes:
        node.accounts = counts.get(node.row.unit.pk, 0)
    return tree


@login_required
def unit_list(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    form = UnitCreateForm(
        request.POST or None, domain=domain, initial={"parent": domain.root_unit.pk}
    )
    if request.method == "POST" and form.is_valid():
        unit = OrgUnit.objects.create(
            domain=domain, parent=form.cleaned_data["parent"], name=form.cleaned_data["name"]
        )
        messages.success(
            request, _("%(unit)s created; it inherits its parent's policy.") % {"unit": unit}
        )
        # Back to the tree, opened down to the new OU.
        return redirect(f"{reverse('unit_list', args=[domain.pk])}?open={unit.pk}")
    show = request.GET.get("open", "")
    tree = _count_accounts(tree_root(domain, show=int(show) if show.isdigit() else None))
    return render(
        request, "directory/unit_list.html", {"domain": domain, "tree": tree, "form": form}
    )


@login_required
@require_GET
def unit_branch(request: AuthenticatedRequest, pk: int, unit_pk: int) -> HttpResponse:
    """htmx partial: one OU of the tree, opened on its sub-OUs or closed; or, with ``after``,
    the sub-OUs that follow that one."""
    unit = get_unit_for_admin(request, pk, unit_pk)
    if not request.htmx:  # opened as a page: the tree, opened down to this OU
        return redirect(f"{reverse('unit_list', args=[unit.domain_id])}?open={unit.pk}")
    after = request.GET.get("after", "")
    after_pk = int(after) if after.isdigit() else None
    node = tree_branch(
        unit, open=request.GET.get("open") == "1" or after_pk is not None, after=after_pk
    )
    # "Show more": only the next sub-OUs, in place of the button.
    template = "unit_children.html" if after_pk is not None else "unit_node.html"
    return render(
        request,
        f"directory/partials/{template}",
        {"domain": unit.domain, "node": _count_accounts(node)},
    )


@login_required
@require_GET
def unit_search(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """htmx partial of the OU picker: the OUs whose path contains what was typed.

    ``name`` is the form field the choices fill in; ``exclude`` an OU left out with its sub-OUs
    (a move must not put an OU under itself).
    """
    domain = get_domain_for_admin(request, pk)
    query = request.GET.get("q", "").strip().casefold()
    paths = OrgUnit.objects.paths(domain.pk)
    exclude = request.GET.get("exclude", "")
    if exclude.isdigit() and int(exclude) in paths:
        for unit_pk in subtree(unit_settings(domain.pk, root_allow=False), int(exclude)):
            paths.pop(unit_pk, None)
    # In tree order: the top OU first, each OU followed by its sub-OUs.
    found = sorted(
        ((path, unit_pk) for unit_pk, path in paths.items() if query in path.casefold()),
        key=lambda item: (item[0].split("/"), item[1]),
    )
    return render(
        request,
        "directory/partials/unit_choices.html",
        {
            "name": name if FIELD_NAME.fullmatch(name := request.GET.get("name", "")) else "unit",
            "choices": found[:SEARCH_RESULTS],
            "more": len(found) > SEARCH_RESULTS,
        },
    )


def _move_form(unit: OrgUnit, data=None) -> UnitMoveForm:
    excluded = subtree(unit_settings(unit.domain_id, root_allow=False), unit.pk)
    return UnitMoveForm(data, unit=unit, excluded=excluded, prefix="move")


@login_required
def unit_detail(request: AuthenticatedRequest, pk: int, unit_pk: int) -> HttpResponse:
    unit = get_unit_for_admin(request, pk, unit_pk)
    domain = unit.domain
    action = request.POST.get("action") if request.method == "POST" else None
    rename = UnitRenameForm(
        request.POST if action == "rename" else None,
        unit=unit,
        initial={"name": unit.name},
        prefix="rename",
    )
    move = None if unit.is_root else _move_form(unit, request.POST if action == "move" else None)
    move_acc = AccountMoveForm(
        request.POST if action == "move_account" else None,
        domain=domain,
        initial={"unit": unit.pk},
        prefix="account",
    )
    if action == "rename" and rename.is_valid():
        unit.name = rename.cleaned_data["name"]
        unit.save(update_fields=["name"])
        messages.success(request, _("Renamed to %(name)s.") % {"name": unit.name})
        return redirect("unit_detail", pk=domain.pk, unit_pk=unit.pk)
    if action == "move" and move is not None and move.is_valid():
        try:
            change = move_unit(unit, move.cleaned_data["parent"], request.user)
        except PolicyError as exc:
            move.add_error("parent", str(exc))
        else:
            if change is None:
                messages.success(request, _("Moved. Its accounts keep their policy value."))
            else:
                messages.success(
                    request, _("Moved. Applying the newly inherited policy to its accounts.")
                )
            return redirect("unit_detail", pk=domain.pk, unit_pk=unit.pk)
    if action == "move_account" and move_acc.is_valid():
        account, target = move_acc.cleaned_data["email"], move_acc.cleaned_data["unit"]
        try:
            move_account(account, target, request.user)
        except PolicyError as exc:
            move_acc.add_error("unit", str(exc))
        else:
            messages.success(
                request,
                _("%(account)s moved to %(unit)s.") % {"account": account, "unit": target},
            )
            return redirect("unit_detail", pk=domain.pk, unit_pk=unit.pk)
    accounts = Account.objects.filter(org_unit=unit).only("pk", "email")
    return render(
        request,
        "directory/unit_detail.html",
        {
            "domain": domain,
            "unit": unit,
            "path": unit.path(),
            "rename": rename,
            "move": move,
            "move_account": move_acc,
            "accounts": keyset_page(accounts, request.GET, order=("email", "id")),
            "account_count": capped_count(accounts),
            "can_delete": not unit.is_root and unit.is_empty(),
        },
    )


@login_required
def unit_delete(request: AuthenticatedRequest, pk: int, unit_pk: int) -> HttpResponse:
    unit = get_unit_for_admin(request, pk, unit_pk)
    domain = unit.domain
    if unit.is_root or not unit.is_empty():
        messages.error(
            request,
            _("Only an empty OU can be deleted: move its accounts and sub-OUs elsewhere first."),
        )
        return redirect("unit_detail", pk=domain.pk, unit_pk=unit.pk)
    if request.method == "POST":
        name = str(unit)
        unit.delete()
        messages.success(request, _("%(unit)s deleted.") % {"unit": name})
        return redirect("unit_list", pk=domain.pk)
    return render(request, "directory/unit_delete.html", {"domain": domain, "unit": unit})
