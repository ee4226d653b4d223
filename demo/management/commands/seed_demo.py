"""Create the demo domain, accounts and the domain's outbound gateway (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from demo import world as demo
from directory.models import Account, Domain, OrgUnit
from gateways.models import SmtpServer
from policy.models import OutboundPolicy


class Command(BaseCommand):
    help = "Create demo domains, logins and the local gateway settings; print the logins."

    def handle(self, *args, **options) -> None:
        demo.ensure_certificates()
        with transaction.atomic():
            example = self._domain(demo.DOMAIN)
            self._domain(demo.OTHER_DOMAIN)
            if example.outbound_gateway is None:
                login, password = demo.GATEWAY_LOGIN
                example.outbound_gateway = SmtpServer.objects.create(
                    host="localhost",
                    port=demo.GATEWAY_PORT,
                    security=SmtpServer.Security.STARTTLS,
                    username=login,
                    password=password,
                    last_test_ok=True,
                )
                example.save(update_fields=["outbound_gateway"])
            # OUs the README's policy examples name (e.g. `--unit Sales/EMEA`).
            sales, _ = OrgUnit.objects.get_or_create(
                domain=example, parent=example.root_unit, name="Sales"
            )
            OrgUnit.objects.get_or_create(domain=example, parent=sales, name="EMEA")
            admin = self._account(demo.ADMIN, "Dana Admin")
            example.admins.add(admin)
            self._account(demo.USER, "Ann Example")
            self._account(demo.OUTSIDER, "Zoe Other")
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            f"  domain admin: {demo.ADMIN} / {demo.PASSWORD}\n"
            f"  user:         {demo.USER} / {demo.PASSWORD}\n"
            f"  partner SMTP server for an alias in {demo.PARTNER_DOMAIN}: host localhost, "
            f"port {demo.PARTNER_PORT}, STARTTLS, "
            f"user {demo.PARTNER_LOGIN[0]}, password {demo.PARTNER_LOGIN[1]}\n"
            f"  SMTP submission: localhost:{demo.SUBMISSION_PORT} (STARTTLS; log in with an app "
            f"password from the console's App passwords page)\n"
        )

    def _domain(self, name: str) -> Domain:
        # The demo vouches for its own names (nothing resolves them): verified from the start.
        domain, created = Domain.objects.get_or_create(
            name=name, defaults={"verified_at": timezone.now()}
        )
        if created:
            OrgUnit.objects.create(domain=domain, name=name)
            OutboundPolicy.objects.create(domain=domain)
        return domain

    def _account(self, email: str, name: str) -> Account:
        account = Account.objects.filter(email=email).first()
        if account is None:
            account = Account.objects.create_user(email, demo.PASSWORD, display_name=name)
        return account
