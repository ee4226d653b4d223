"""The send-as alias if it is the requester's own, else 404 (never a 403)."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from .models import ConnectionTest, SendAsAlias


def get_alias_for_user(request: HttpRequest, pk: int) -> SendAsAlias:
    return get_object_or_404(
        SendAsAlias.objects.select_related("smtp_server"), pk=pk, account=request.user
    )


def get_connection_test_for_user(request: HttpRequest, pk: int) -> ConnectionTest:
    return get_object_or_404(
        ConnectionTest.objects.select_related("alias__smtp_server"), pk=pk, account=request.user
    )
