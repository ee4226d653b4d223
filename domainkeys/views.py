"""The domain admin's DKIM page: generate a key, see the record to publish, check DNS, retire."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from directory.access import AuthenticatedRequest, get_domain_for_admin
from mailkit import dns

from .access import get_key_for_admin
from .forms import GenerateKeyForm
from .keys import check_dns, generate_key
from .models import DkimKey


@login_required
def key_list(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    form = GenerateKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        key = generate_key(domain, form.cleaned_data["algorithm"])
        messages.success(
            request,
            _("Key %(selector)s created. Publish its DNS record, then check DNS.")
            % {"selector": key.selector},
        )
        return redirect("dkim_keys", pk=domain.pk)
    keys = list(domain.dkim_keys.select_related("domain"))
    return render(
        request,
        "domainkeys/key_list.html",
        {
            "domain": domain,
            "form": form,
            "keys": keys,
            "signing": [k for k in keys if k.state == DkimKey.State.ACTIVE],
        },
    )


@login_required
@require_POST
def key_check(request: AuthenticatedRequest, pk: int, key_pk: int) -> HttpResponse:
    key = get_key_for_admin(request, pk, key_pk)
    was_waiting = key.state == DkimKey.State.WAITING
    # One TXT lookup bounded by dns.PAGE_LIFETIME: short enough for a request.
    if check_dns(key, dns.default_resolver()) and was_waiting:
        messages.success(
            request,
            _("The record of %(selector)s is published: mail is now signed with it.")
            % {"selector": key.selector},
        )
    else:
        messages.info(request, key.check_result)
    return redirect("dkim_keys", pk=key.domain_id)


@login_required
def key_delete(request: AuthenticatedRequest, pk: int, key_pk: int) -> HttpResponse:
    key = get_key_for_admin(request, pk, key_pk)
    if not key.may_be_deleted:
        messages.error(
            request,
            _(
                "This key still signs mail, or mail signed with it may still be on its way; it "
                "can be deleted once it is replaced and its week is over."
            ),
        )
        return redirect("dkim_keys", pk=key.domain_id)
    if request.method == "POST":
        selector = key.selector
        key.delete()
        messages.success(
            request,
            _("Key %(selector)s deleted. You can remove its DNS record now.")
            % {"selector": selector},
        )
        return redirect("dkim_keys", pk=pk)
    return render(request, "domainkeys/key_delete.html", {"domain": key.domain, "key": key})
