"""The domain admin's account pages: the list (search, filter, keyset pages, bulk actions), add,
one account (invitation, reset, deactivate, admin rights, held mail) and the CSV import."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db.models import Q
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from outbox import onboarding
from policy.service import PolicyError, move_account

from .access import AuthenticatedRequest, get_account_for_admin, get_domain_for_admin
from .account_import import check_csv
from .accounts import DirectoryError, grant_admin, revoke_admin
from .forms import (
    AccountAddForm,
    AccountFilterForm,
    AccountImportForm,
    AccountUnitForm,
    unit_field,
)
from .models import Account, Domain, OrgUnit

PAGE_SIZE = 50
PREVIEW_ROWS = 20


def _page(accounts, after: str, before: str) -> tuple[list[Account], bool, bool]:
    """One page by address (keyset): rows, whether older/newer pages exist."""
    if before:
        rows = list(accounts.filter(email__lt=before).order_by("-email")[: PAGE_SIZE + 1])
        has_prev = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        return rows, has_prev, True
    if after:
        accounts = accounts.filter(email__gt=after)
    rows = list(accounts.order_by("email")[: PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], bool(after), len(rows) > PAGE_SIZE


@login_required
def account_list(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    if request.method == "POST":
        return _bulk(request, domain)
    form = AccountFilterForm(request.GET or None, domain=domain)
    accounts = Account.objects.filter(domain=domain).only(
        "pk", "email", "display_name", "org_unit_id", "is_active", "last_login", "password"
    )
    if form.is_valid():
        data = form.cleaned_data
        if data["q"]:
            accounts = accounts.filter(
                Q(email__icontains=data["q"].strip()) | Q(display_name__icontains=data["q"].strip())
            )
        if data["unit"]:
            accounts = accounts.filter(org_unit=data["unit"])
        if data["state"]:
            accounts = accounts.filter(is_active=data["state"] == "active")
    rows, has_prev, has_next = _page(
        accounts, request.GET.get("after", ""), request.GET.get("before", "")
    )
    paths = OrgUnit.objects.paths(domain.pk)
    admin_ids = set(domain.admins.filter(pk__in=[a.pk for a in rows]).values_list("pk", flat=True))
    query = request.GET.copy()
    query.pop("after", None)
    query.pop("before", None)
    return render(
        request,
        "directory/account_list.html",
        {
            "domain": domain,
            "form": form,
            "rows": [(a, paths.get(a.org_unit_id or 0, ""), a.pk in admin_ids) for a in rows],
            "has_prev": has_prev,
            "has_next": has_next,
            "first": rows[0].email if rows else "",
            "last": rows[-1].email if rows else "",
            "query": query.urlencode(),
            "move_field": unit_field(_("Move to"), domain.pk).widget.render(
                "unit", None, {"id": "bulk-unit"}
            ),
        },
    )


def _bulk(request: AuthenticatedRequest, domain: Domain) -> HttpResponse:
    """Move, deactivate or reactivate the selected accounts (only those of this domain)."""
    ids = [int(v) for v in request.POST.getlist("accounts") if v.isdigit()]
    accounts = list(Account.objects.filter(domain=domain, pk__in=ids).select_related("domain"))
    action = request.POST.get("action")
    if not accounts:
        messages.error(request, _("Select at least one account."))
        return redirect("account_list", pk=domain.pk)
    done, refused = 0, []
    unit = None
    if action == "move":
        unit = OrgUnit.objects.filter(domain=domain, pk=request.POST.get("unit") or 0).first()
        if unit is None:
            messages.error(request, _("Choose the OU to move the accounts to."))
            return redirect("account_list", pk=domain.pk)
    for account in accounts:
        try:
            if action == "move" and unit is not None:
                done += move_account(account, unit, request.user)
            elif action == "deactivate":
                onboarding.deactivate(account, request.user)
                done += 1
            elif action == "reactivate":
                done += onboarding.reactivate(account, request.user)
        except (DirectoryError, PolicyError) as exc:
            refused.append(str(exc))
    messages.success(
        request,
        ngettext("%(count)d account changed.", "%(count)d accounts changed.", done)
        % {"count": done},
    )
    for reason in refused:
        messages.error(request, reason)
    query = request.POST.get("query", "")
    url = reverse("account_list", args=[domain.pk])
    # Back to the same search; only our own query string, never a URL from the form.
    return redirect(f"{url}?{QueryDict(query).urlencode()}" if query else url)


@login_required
def account_add(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    form = AccountAddForm(request.POST or None, domain=domain, initial={"unit": domain.root_unit})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            account = onboarding.add_account(
                domain, data["email"], data["display_name"], data["unit"], request.user
            )
        except DirectoryError as exc:
            form.add_error("email", str(exc))
        else:
            messages.success(
                request,
                _("%(address)s is created; an invitation to choose a password is on its way.")
                % {"address": account.email},
            )
            return redirect("account_detail", pk=domain.pk, account_pk=account.pk)
    return render(
        request,
        "directory/account_add.html",
        {"domain": domain, "form": form, "link_hours": settings.PASSWORD_RESET_TIMEOUT // 3600},
    )


ACTIONS: dict[str, Callable[..., object]] = {
    "resend": lambda a, actor: onboarding.send_invitation(a, actor),
    "reset": lambda a, actor: onboarding.send_password_reset(a, actor),
    "deactivate": onboarding.deactivate,
    "reactivate": onboarding.reactivate,
    "make_admin": lambda a, actor: grant_admin(a.domain, a, actor),
    "revoke_admin": lambda a, actor: revoke_admin(a.domain, a, actor),
    "deliver_held": onboarding.release_held,
    "discard_held": onboarding.discard_held,
}


def _done_message(action: str, account: Account) -> str:
    return {
        "resend": _("A new invitation is on its way to %(address)s."),
        "reset": _("A password reset link is on its way to %(address)s."),
        "deactivate": _("%(address)s is deactivated: it can no longer log in or send."),
        "reactivate": _("%(address)s can log in again."),
        "make_admin": _("%(address)s is now an admin of this domain."),
        "revoke_admin": _("%(address)s is no longer an admin of this domain."),
        "deliver_held": _("The held mail of %(address)s is queued for delivery."),
        "discard_held": _("The held mail of %(address)s is discarded."),
    }[action] % {"address": account.email}


@login_required
def account_detail(request: AuthenticatedRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_account_for_admin(request, pk, account_pk)
    domain = account.domain
    assert domain is not None  # get_account_for_admin found the account in its domain
    move = AccountUnitForm(
        request.POST if request.POST.get("action") == "move" else None, domain=domain
    )
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "move":
                if move.is_valid():
                    move_account(account, move.cleaned_data["unit"], request.user)
                    messages.success(
                        request,
                        _("%(address)s moved to %(unit)s.")
                        % {"address": account.email, "unit": move.cleaned_data["unit"].path()},
                    )
                    return redirect("account_detail", pk=domain.pk, account_pk=account.pk)
            elif action in ACTIONS:
                ACTIONS[action](account, request.user)
                messages.success(request, _done_message(action, account))
                return redirect("account_detail", pk=domain.pk, account_pk=account.pk)
        except (DirectoryError, PolicyError) as exc:
            messages.error(request, str(exc))
            return redirect("account_detail", pk=domain.pk, account_pk=account.pk)
    held = onboarding.held_mail(account).only("pk", "subject", "recipients", "created_at")
    return render(
        request,
        "directory/account_detail.html",
        {
            "domain": domain,
            "account": account,
            "unit_path": account.org_unit.path() if account.org_unit else "",
            "is_admin": domain.admins.filter(pk=account.pk).exists(),
            "invited": not account.has_usable_password(),
            "held": held[:50],
            "held_count": held.count(),
            "move": move,
            "events": domain.audit_events.filter(target=account.email)[:20],
        },
    )


# --- CSV import -----------------------------------------------------------------------------------


TICKET_SECONDS = 3600


def _upload_dir() -> Path:
    path = Path(settings.VAR_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _forget_old_uploads() -> None:
    """Checked files nobody imported: gone once their preview has expired."""
    cutoff = time.time() - TICKET_SECONDS
    for path in _upload_dir().iterdir():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt="account-import")


@login_required
def account_import(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Upload: check every row and show the result (nothing changes). Apply: import it all.

    A file that passes is kept and the upload redirects to its preview (post/redirect/get), so
    reloading the preview does not send the file again.
    """
    domain = get_domain_for_admin(request, pk)
    if request.method == "POST" and request.POST.get("upload"):
        return _apply_import(request, domain)
    form = AccountImportForm(request.POST or None, request.FILES or None)
    plan, upload = None, ""
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        if uploaded.size > 10 * 1024 * 1024:
            form.add_error("file", _("The file is larger than 10 MB: split it into smaller files."))
        else:
            data = uploaded.read()
            plan = check_csv(domain, data, uploaded.name)
            _forget_old_uploads()
            if plan.ok:
                # Kept on disk until applied; the preview's URL carries only a signed name for it.
                name = secrets.token_hex(16)
                (_upload_dir() / name).write_bytes(data)
                upload = _signer().sign_object(
                    {
                        "file": name,
                        "domain": domain.pk,
                        "user": request.user.pk,
                        "invite": form.cleaned_data["invite"],
                        "name": uploaded.name[:200],
                    }
                )
                url = reverse("account_import", args=[domain.pk])
                return redirect(f"{url}?{urlencode({'preview': upload})}")
    elif request.method == "GET" and request.GET.get("preview"):
        checked = _checked_upload(request, domain, request.GET["preview"])
        if checked is None:
            return redirect("account_import", pk=domain.pk)
        ticket, path = checked
        # Checked again: accounts may have been added since the upload.
        plan = check_csv(domain, path.read_bytes(), ticket["name"])
        upload = request.GET["preview"] if plan.ok else ""
    return render(
        request,
        "directory/account_import.html",
        {
            "form": form,
            "plan": plan,
            "preview": plan.rows[:PREVIEW_ROWS] if plan else [],
            "upload": upload,
            **_imports_context(domain),
        },
    )


def _checked_upload(
    request: AuthenticatedRequest, domain: Domain, signed: str
) -> tuple[dict, Path] | None:
    """The ticket and kept file of a checked upload, if it is this admin's, for this domain, and
    recent; otherwise None, with a message that says to upload it again."""
    try:
        ticket = _signer().unsign_object(signed, max_age=TICKET_SECONDS)
    except signing.BadSignature:
        ticket = None
    if ticket is not None and ticket["domain"] == domain.pk and ticket["user"] == request.user.pk:
        path = _upload_dir() / Path(ticket["file"]).name
        if path.exists():
            return ticket, path
    messages.error(request, _("That preview has expired; upload the file again."))
    return None


def _imports_context(domain: Domain) -> dict:
    imports = list(domain.imports.all()[:5])
    return {
        "domain": domain,
        "imports": imports,
        "sending": any(job.is_sending for job in imports),
    }


@login_required
def account_import_progress(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """htmx partial: recent imports and how far their invitations are; polls while sending."""
    domain = get_domain_for_admin(request, pk)
    return render(request, "directory/partials/import_progress.html", _imports_context(domain))


def _apply_import(request: AuthenticatedRequest, domain: Domain) -> HttpResponse:
    checked = _checked_upload(request, domain, request.POST["upload"])
    if checked is None:
        return redirect("account_import", pk=domain.pk)
    ticket, path = checked
    # Checked again: accounts may have been added since the preview.
    plan = check_csv(domain, path.read_bytes(), ticket["name"])
    try:
        job = onboarding.import_accounts(plan, request.user, invite=ticket["invite"])
    except DirectoryError as exc:
        messages.error(request, str(exc))
        return redirect("account_import", pk=domain.pk)
    path.unlink(missing_ok=True)
    messages.success(
        request,
        ngettext("%(count)d account imported.", "%(count)d accounts imported.", job.total)
        % {"count": job.total},
    )
    if job.invite:
        messages.info(request, _("Their invitations are being sent; the progress is shown below."))
        return redirect("account_import", pk=domain.pk)
    return redirect("account_list", pk=domain.pk)
