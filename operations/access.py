"""Who may read /metrics and /health/: loopback clients, or anyone with the operator's token."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest

# A reverse proxy on the same host makes every visitor look like loopback; what it forwarded
# carries one of these headers and must show the token like any other remote client.
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED")


def may_read_operations_data(request: HttpRequest) -> bool:
    token = settings.SENDGATE_METRICS_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    if any(header in request.META for header in _FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
