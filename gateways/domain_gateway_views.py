"""The domain admin's outbound gateway page: tested with the delivery path before it is saved."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from directory.access import AuthenticatedRequest, get_domain_for_admin
from mailkit.smtp import readable_transcript

from .connection_test import TooManyTests, run_connection_test
from .domain_gateway import set_domain_gateway
from .forms import DomainGatewayForm


@login_required
def domain_gateway(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = get_domain_for_admin(request, pk)
    current = domain.outbound_gateway
    form = DomainGatewayForm(request.POST or None, instance=current)
    transcript: list[str] = []
    if request.method == "POST" and form.is_valid():
        server = form.server()
        if server is None:
            set_domain_gateway(domain, None, request.user)
            messages.success(request, _("Mail now goes directly to the recipients' servers."))
            return redirect("domain_gateway", pk=domain.pk)
        # Probe with the address the domain path sends from: the admin's own, when it is in
        # this domain (an operator's may not be).
        mail_from = (
            request.user.email if request.user.domain_id == domain.pk else f"postmaster@{domain}"
        )
        try:
            outcome = run_connection_test(request.user, server, mail_from)
        except TooManyTests:
            form.add_error(None, _("Too many connection tests in the last hour. Try again later."))
        else:
            transcript = readable_transcript(outcome.transcript)
            if outcome.ok:
                set_domain_gateway(domain, server, request.user)
                messages.success(
                    request,
                    _("The gateway passed its connection test and is saved: %(server)s.")
                    % {"server": server},
                )
                return redirect("domain_gateway", pk=domain.pk)
            form.add_error("smtp_host", outcome.error)
    return render(
        request,
        "gateways/domain_gateway.html",
        {
            "domain": domain,
            "form": form,
            "current_label": str(current) if current else "",
            "transcript": transcript,
            "allowed_networks": settings.SENDGATE_SMTP_ALLOWED_NETWORKS,
        },
    )
