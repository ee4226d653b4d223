"""Compose and the sender's own outbox."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from directory.access import AuthenticatedRequest
from mailkit.paging import capped_count, keyset_page
from outbox.models import ManualRetry, Message
from outbox.retry import retry_now

from .forms import ComposeForm
from .intake import Attachment, accept_message, sendable_addresses
from .submission import over_daily_limit


def get_message_for_user(request: HttpRequest, pk: int) -> Message:
    return get_object_or_404(Message.objects.for_sender(request.user), pk=pk)


@login_required
def compose(request: AuthenticatedRequest) -> HttpResponse:
    default = request.user.aliases.filter(is_default=True, state="verified").first()
    form = ComposeForm(
        request.POST or None,
        request.FILES or None,
        addresses=sendable_addresses(request.user),
        initial={"from_address": default.address if default else request.user.email},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        attachments = [
            Attachment(f.name, f.content_type or "application/octet-stream", f.read())
            for f in data["attachments"]
        ]
        try:
            if over_daily_limit(request.user):
                raise ValidationError(
                    ngettext(
                        "You reached your limit of %(limit)d message in 24 hours; try later.",
                        "You reached your limit of %(limit)d messages in 24 hours; try later.",
                        settings.SENDGATE_DAILY_MESSAGE_LIMIT,
                    )
                    % {"limit": settings.SENDGATE_DAILY_MESSAGE_LIMIT}
                )
            message = accept_message(
                request.user,
                data["from_address"],
                data["to"],
                data["subject"],
                data["body"],
                attachments,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Your message is queued for delivery."))
            return redirect("sent_detail", pk=message.pk)
    return render(request, "outbound/compose.html", {"form": form})


@login_required
def sent_list(request: AuthenticatedRequest) -> HttpResponse:
    sent = Message.objects.for_sender(request.user).only(
        "pk", "subject", "from_address", "recipients", "state", "last_route", "created_at"
    )
    return render(
        request,
        "outbound/sent_list.html",
        {"sent": keyset_page(sent, request.GET), "total": capped_count(sent)},
    )


@login_required
def sent_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    message = get_message_for_user(request, pk)
    template = (
        "outbound/partials/message_status.html" if request.htmx else "outbound/sent_detail.html"
    )
    return render(request, template, {"message": message, "attempts": message.attempts.all()})


@login_required
@require_POST
def sent_retry(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Try a deferred message again now instead of at its next scheduled attempt."""
    message = get_message_for_user(request, pk)
    if message.state != Message.State.DEFERRED:
        messages.error(
            request, _("Only a message waiting for its next attempt can be retried now.")
        )
    else:
        retry_now(
            Message.objects.for_sender(request.user).filter(pk=message.pk),
            request.user,
            ManualRetry.Scope.MESSAGE,
            message.message_id,
            request.user.domain,
        )
        messages.success(request, _("Trying again now."))
    return redirect("sent_detail", pk=message.pk)
