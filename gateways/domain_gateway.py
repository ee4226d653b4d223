"""The domain's outbound gateway (smarthost): set it after a connection test, or clear it."""

from __future__ import annotations

from django.db import transaction

from directory.models import Account, AuditEvent, Domain

from .models import SmtpServer


def set_domain_gateway(domain: Domain, server: SmtpServer | None, actor: Account) -> None:
    """Save ``server`` as the domain's gateway (None: deliver directly to recipients' MX)."""
    with transaction.atomic():
        old = domain.outbound_gateway
        if server is None:
            if old is None:
                return
            domain.outbound_gateway = None
            domain.save(update_fields=["outbound_gateway"])
            old.delete()  # its stored password goes with it
            detail = "direct MX"
        else:
            server.save()  # its passed test set it ok (server_state.passed_test)
            domain.outbound_gateway = server
            domain.save(update_fields=["outbound_gateway"])
            detail = f"{server.host}:{server.port} {server.security}"
            if server.username:
                detail += f" user {server.username}"
        AuditEvent.record(
            domain,
            actor,
            AuditEvent.Action.GATEWAY_CHANGED,
            domain.name,
            f"{old or 'direct MX'} -> {detail}",
        )
