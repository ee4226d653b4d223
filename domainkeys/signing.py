"""Sign outgoing mail with the active DKIM keys of the domain a route names."""

from __future__ import annotations

import logging

from dkim import DKIMException

from mailkit import domainkeys
from mailkit.secrets import SecretUnreadable

from .models import DkimKey

log = logging.getLogger(__name__)


class Signer:
    """Signs messages for one delivery batch; each domain's keys are read once per batch.

    With an RSA and an Ed25519 key active, a message carries both signatures (RFC 8463 3):
    receivers that do not know Ed25519 yet still find one they can check.
    """

    def __init__(self) -> None:
        self._keys: dict[str, list[DkimKey]] = {}

    def keys_for(self, domain_name: str) -> list[DkimKey]:
        if domain_name not in self._keys:
            try:
                keys = list(
                    DkimKey.objects.active_for([domain_name])
                    .select_related("domain")
                    .order_by("-algorithm")  # rsa, then ed25519: the RSA signature ends up on top
                )
            except SecretUnreadable as exc:
                # A key ring without the key this was stored under: an operator problem. The mail
                # still goes, unsigned as before, and the log says why.
                log.error("DKIM keys of %s cannot be read: %s", domain_name, exc)
                keys = []
            self._keys[domain_name] = keys
        return self._keys[domain_name]

    def sign(self, data: bytes, domain_name: str | None) -> bytes:
        """``data`` with a DKIM-Signature per active key of ``domain_name`` (none: unchanged)."""
        if not domain_name:
            return data
        for key in self.keys_for(domain_name):
            try:
                data = domainkeys.sign(
                    data,
                    domain=key.domain.name,
                    selector=key.selector,
                    algorithm=domainkeys.Algorithm(key.algorithm),
                    private_key=key.private_key,
                )
            except DKIMException as exc:
                log.error("DKIM signing with %s failed: %s", key.record_name, exc)
        return data
