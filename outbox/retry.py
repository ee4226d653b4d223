"""'Retry now': make deferred mail due at once, and keep an audit record of who asked."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from directory.models import Account, Domain

from .models import ManualRetry, Message
from .queue import make_due


def retry_now(
    messages: QuerySet[Message],
    by: Account,
    scope: ManualRetry.Scope,
    subject: str,
    domain: Domain | None = None,
) -> ManualRetry:
    """Make the deferred ones among ``messages`` due now; the caller has scoped ``messages``."""
    with transaction.atomic():
        ids = make_due(messages)
        return ManualRetry.objects.create(
            requested_by=by,
            requested_by_email=by.email,
            domain=domain,
            scope=scope,
            subject=subject[:300],
            message_count=len(ids),
        )
