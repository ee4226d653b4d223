"""Domain ownership: a TXT record ``sendgate-verification=<token>`` at the domain's name."""

from __future__ import annotations

from django.db import transaction

from mailkit import dns

from .models import AuditEvent, Domain


def check_ownership(domain: Domain, actor=None, resolver: dns.Resolver | None = None) -> dns.Status:
    """Look for the domain's verification record; mark the domain verified when it is there.

    Returns FOUND (verified now or before), MISSING (DNS answered without it) or UNKNOWN (DNS did
    not answer: try again later).
    """
    if domain.is_verified:
        return dns.Status.FOUND
    lookup = dns.txt_records(domain.name, resolver or dns.default_resolver())
    if not lookup.found:
        return lookup.status
    wanted = domain.verification_record
    if not any(text.strip() == wanted for text in lookup.values):
        return dns.Status.MISSING
    with transaction.atomic():
        domain.mark_verified()
        domain.save(update_fields=["verified_at"])
        AuditEvent.record(domain, actor, AuditEvent.Action.DOMAIN_VERIFIED, domain.name, wanted)
    return dns.Status.FOUND
