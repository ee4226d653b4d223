"""The domain admin's delivery log and live queue counters."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from directory.access import get_domain_for_admin
from directory.models import Account, Domain
from mailkit.paging import CappedCount, capped_counts, keyset_page
from outbox.models import Message

from .routing import RouteKind


class DeliveryFilter(forms.Form):
    state = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any"))] + Message.State.choices
    )
    route = forms.ChoiceField(
        label=_("Route"), required=False, choices=[("", _("Any"))] + RouteKind.choices
    )
    account = forms.CharField(label=_("Sender"), required=False, max_length=254)


# Sent and failed messages only pile up: the counters show those of the last day. The live states
# (queued, sending, deferred) are counted whatever their age: that is the work still to do.
LIVE_STATES = (Message.State.QUEUED, Message.State.SENDING, Message.State.DEFERRED)
RECENT_WINDOW = timedelta(hours=24)


def domain_messages(domain: Domain):
    return Message.objects.for_domain(domain)


def counted(domain: Domain) -> dict[str, QuerySet]:
    """What each counter counts: a live state whatever its age, or a final state of the window."""
    since = timezone.now() - RECENT_WINDOW
    querysets = {}
    for state in Message.State.values:
        rows = domain_messages(domain).filter(state=state)
        querysets[state] = rows if state in LIVE_STATES else rows.filter(created_at__gte=since)
    return querysets


def queue_counters(domain: Domain, counts: dict[str, CappedCount]) -> dict:
    """The counters' context from their capped counts, with the next retry."""
    next_retry = (
        domain_messages(domain)
        .filter(state=Message.State.DEFERRED)
        .aggregate(at=Min("next_attempt_at"))["at"]
    )
    return {
        "counts": [
            (label, counts[state], state, state in LIVE_STATES)
            for state, label in Message.State.choices
        ],
        "next_retry": next_retry,
    }


SENDERS_LOOKED_UP = 100


def by_sender(domain: Domain, messages, text: str):
    """Messages of the senders whose address contains ``text``.

    Few senders match (the usual case: an address): find them first, so their messages come from
    the (account, created_at) index instead of a walk through the domain's whole log joined to
    accounts. Many senders match: their messages are frequent, so the walk finds a page quickly.
    """
    senders = list(
        Account.objects.filter(domain=domain, email__icontains=text).values_list("pk", flat=True)[
            : SENDERS_LOOKED_UP + 1
        ]
    )
    if len(senders) > SENDERS_LOOKED_UP:
        return messages.filter(account__email__icontains=text)
    return messages.filter(account_id__in=senders)


@login_required
def delivery_log(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    form = DeliveryFilter(request.GET or None)
    messages = (
        domain_messages(domain)
        .select_related("account")
        .only(
            "pk",
            "created_at",
            "from_address",
            "recipients",
            "subject",
            "state",
            "last_route",
            "last_reply",
            "next_attempt_at",
            "account__email",
        )
    )
    if form.is_valid():
        data = form.cleaned_data
        if data["state"]:
            messages = messages.filter(state=data["state"])
        if data["route"]:
            messages = messages.filter(last_route=data["route"])
        if data["account"]:
            messages = by_sender(domain, messages, data["account"].strip())
    # The list's total and the counters: one round trip.
    counts = capped_counts({"total": messages, **counted(domain)})
    return render(
        request,
        "outbound/delivery_log.html",
        {
            "domain": domain,
            "form": form,
            "page": keyset_page(messages, request.GET, order=("-created_at", "-id")),
            "total": counts["total"],
            **queue_counters(domain, counts),
        },
    )


@login_required
def delivery_counters(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx partial, polled by the delivery log."""
    domain = get_domain_for_admin(request, pk)
    counters = queue_counters(domain, capped_counts(counted(domain)))
    return render(request, "outbound/partials/counters.html", {"domain": domain, **counters})


@login_required
def delivery_detail(request: HttpRequest, pk: int, message_pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    message = get_object_or_404(domain_messages(domain), pk=message_pk)
    template = (
        "outbound/partials/message_status.html"
        if request.htmx
        else ("outbound/delivery_detail.html")
    )
    return render(
        request,
        template,
        {"domain": domain, "message": message, "attempts": message.attempts.all()},
    )
