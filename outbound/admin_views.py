"""The domain admin's delivery log and live queue counters."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Min, OuterRef, QuerySet, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from directory.access import AuthenticatedRequest, get_domain_for_admin
from directory.models import Account, Domain
from mailkit.paging import CappedCount, capped_counts, keyset_page
from outbox.models import DeliveryAttempt, ManualRetry, Message
from outbox.retry import retry_now

from .routing import RouteKind

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class DeliveryFilter(forms.Form):
    state = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any"))] + Message.State.choices
    )
    route = forms.ChoiceField(
        label=_("Route"), required=False, choices=[("", _("Any"))] + RouteKind.choices
    )
    account = forms.CharField(label=_("Sender"), required=False, max_length=254)


# Sent and failed messages only pile up: the counters show those of the last day. The waiting
# states (queued, sending, deferred, held) are counted whatever their age: the work still to do.
LIVE_STATES = Message.WAITING_STATES
RECENT_WINDOW = timedelta(hours=24)


def domain_messages(domain: Domain):
    return Message.objects.for_domain(domain)


class _LastServer(TypedDict):
    last_server: str | None


def deferred_with_last_server(
    domain: Domain,
) -> QuerySet[WithAnnotations[Message, _LastServer]]:
    """The domain's deferred mail, each with the server its last attempt went to."""
    last_server = (
        DeliveryAttempt.objects.filter(message=OuterRef("pk")).order_by("-id").values("server")[:1]
    )
    return (
        domain_messages(domain)
        .filter(state=Message.State.DEFERRED)
        .annotate(last_server=Subquery(last_server))
    )


def deferred_by_server(domain: Domain) -> list[dict]:
    return list(
        deferred_with_last_server(domain)
        .values("last_server")
        .annotate(count=Count("id"))
        .order_by("-count", "last_server")
    )


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
def delivery_log(request: AuthenticatedRequest, pk: int) -> HttpResponse:
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
            "deferred_servers": deferred_by_server(domain),
            "manual_retries": ManualRetry.objects.filter(domain=domain)[:10],
            **queue_counters(domain, counts),
        },
    )


@login_required
def delivery_counters(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """htmx partial, polled by the delivery log."""
    domain = get_domain_for_admin(request, pk)
    counters = queue_counters(domain, capped_counts(counted(domain)))
    return render(request, "outbound/partials/counters.html", {"domain": domain, **counters})


@login_required
def delivery_detail(request: AuthenticatedRequest, pk: int, message_pk: int) -> HttpResponse:
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


@login_required
@require_POST
def delivery_retry(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Retry now: the domain's deferred mail, or (with ``server``) what waits for one server."""
    domain = get_domain_for_admin(request, pk)
    if "server" in request.POST:
        server = request.POST["server"]
        waiting = deferred_with_last_server(domain).filter(last_server=server)
        scope, subject = ManualRetry.Scope.SERVER, server
    else:
        waiting = deferred_with_last_server(domain)
        scope, subject = ManualRetry.Scope.DOMAIN, domain.name
    if not waiting.exists():
        flash.error(request, gettext("No deferred mail waits there; nothing was changed."))
    else:
        retry = retry_now(
            domain_messages(domain).filter(pk__in=waiting.values("pk")),
            request.user,
            scope,
            subject,
            domain,
        )
        flash.success(
            request,
            ngettext(
                "Trying %(count)s deferred message again now.",
                "Trying %(count)s deferred messages again now.",
                retry.message_count,
            )
            % {"count": retry.message_count},
        )
    return redirect("delivery_log", pk=domain.pk)


@login_required
@require_POST
def delivery_retry_message(request: AuthenticatedRequest, pk: int, message_pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    message = get_object_or_404(domain_messages(domain), pk=message_pk)
    if message.state != Message.State.DEFERRED:
        flash.error(
            request, gettext("Only a message waiting for its next attempt can be retried now.")
        )
    else:
        retry_now(
            domain_messages(domain).filter(pk=message.pk),
            request.user,
            ManualRetry.Scope.MESSAGE,
            message.message_id,
            domain,
        )
        flash.success(request, gettext("Trying again now."))
    return redirect("delivery_detail", pk=domain.pk, message_pk=message.pk)
