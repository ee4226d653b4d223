"""The DKIM key if the requester administers its domain, else 404."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from directory.access import AuthenticatedRequest, get_domain_for_admin

from .models import DkimKey


def get_key_for_admin(request: AuthenticatedRequest, domain_pk: int, key_pk: int) -> DkimKey:
    domain = get_domain_for_admin(request, domain_pk)
    return get_object_or_404(DkimKey.objects.select_related("domain"), pk=key_pk, domain=domain)
