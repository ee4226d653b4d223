"""Operator endpoints: Prometheus metrics and the full health report (loopback or token)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from health_check.views import HealthCheckView
from prometheus_client import CONTENT_TYPE_LATEST

from .access import may_read_operations_data
from .health import CHECKS
from .metrics import exposition


def metrics(request: HttpRequest) -> HttpResponse:
    if not may_read_operations_data(request):
        raise Http404
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


class HealthView(HealthCheckView):
    checks = CHECKS

    async def dispatch(self, request, *args, **kwargs):
        if not may_read_operations_data(request):
            raise Http404
        return await super().dispatch(request, *args, **kwargs)
