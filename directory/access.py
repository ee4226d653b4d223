"""The object if this user may see it, else 404: the access helpers of domains and OUs.

Outside the requester's scope is a 404, never a 403 that would tell the object exists.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django_htmx.middleware import HtmxDetails

from .models import Account, Domain, OrgUnit


class AuthenticatedRequest(HttpRequest):
    """The request a login-required view receives, for type checking only.

    `@login_required` guarantees `user` is an Account, never AnonymousUser; HtmxMiddleware sets
    `htmx`. Views annotate their request with this class (the pattern django-stubs documents).
    """

    user: Account
    htmx: HtmxDetails


def get_domain_for_admin(request: AuthenticatedRequest, pk: int) -> Domain:
    return get_object_or_404(Domain.objects.for_admin(request.user), pk=pk)


def require_domain_admin(request: AuthenticatedRequest) -> None:
    if not request.user.is_domain_admin:
        raise Http404


def get_unit_for_admin(request: AuthenticatedRequest, domain_pk: int, unit_pk: int) -> OrgUnit:
    """An OU of a domain the requester administers; anything else is a 404."""
    domain = get_domain_for_admin(request, domain_pk)
    return get_object_or_404(
        OrgUnit.objects.select_related("domain", "parent"), pk=unit_pk, domain=domain
    )


def get_account_for_admin(
    request: AuthenticatedRequest, domain_pk: int, account_pk: int
) -> Account:
    """An account of a domain the requester administers; anything else is a 404."""
    domain = get_domain_for_admin(request, domain_pk)
    return get_object_or_404(
        Account.objects.select_related("domain", "org_unit"), pk=account_pk, domain=domain
    )


def require_operator(request: AuthenticatedRequest) -> None:
    if not request.user.is_superuser:
        raise Http404
