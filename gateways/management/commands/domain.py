"""Operators' domain commands: `domain add|list|show|verify|remove`."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from directory.accounts import DirectoryError
from directory.models import Domain, OrgUnit
from directory.verification import check_ownership
from gateways.domain_removal import remove_domain
from mailkit.dns import Status
from outbox.onboarding import create_domain, queued_count, set_password_link


class Command(BaseCommand):
    help = "Add, list, show, verify or remove hosted domains."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser(
            "add", help="Create a domain, its top OU, its policy (deny) and its first admin."
        )
        add.add_argument("domain")
        add.add_argument("--admin", required=True, help="Address of the first domain admin.")
        add.add_argument("--name", default="", help="The admin's display name.")
        add.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the admin's password from standard input instead of printing a "
            "set-password link.",
        )
        add.add_argument(
            "--verified",
            action="store_true",
            help="Skip the DNS ownership check: you vouch that the organisation owns the name.",
        )
        sub.add_parser("list", help="One line per domain.")
        show = sub.add_parser("show", help="A domain's state, admins, OUs and queue.")
        show.add_argument("domain")
        verify = sub.add_parser("verify", help="Look for the domain's verification TXT record now.")
        verify.add_argument("domain")
        remove = sub.add_parser("remove", help="Delete a domain with its accounts and mail.")
        remove.add_argument("domain")
        remove.add_argument(
            "--force", action="store_true", help="Remove it even though mail is still queued."
        )

    def handle(self, *args, **options) -> None:
        try:
            getattr(self, "_" + options["action"])(options)
        except DirectoryError as exc:
            raise CommandError(str(exc)) from None

    def _domain(self, name: str) -> Domain:
        domain = Domain.objects.filter(name=name.strip().lower().rstrip(".")).first()
        if domain is None:
            raise CommandError(f"No domain {name}.")
        return domain

    def _add(self, options: dict) -> None:
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("No password on standard input.")
        domain, admin = create_domain(
            options["domain"],
            options["admin"],
            verified=options["verified"],
            admin_name=options["name"],
            password=password,
        )
        self.stdout.write(f"Created {domain.name} with admin {admin.email}.")
        if password is None:
            self.stdout.write(
                f"Set-password link for {admin.email} (works once, for 72 hours):\n"
                f"  {set_password_link(admin)}"
            )
        if not domain.is_verified:
            self._verification_help(domain)

    def _verification_help(self, domain: Domain) -> None:
        self.stdout.write(
            f"{domain.name} cannot send until it is verified. Publish this TXT record at "
            f"{domain.name}:\n  {domain.verification_record}\n"
            f"then run: manage.py domain verify {domain.name}"
        )

    def _list(self, options: dict) -> None:
        for domain in Domain.objects.prefetch_related("admins"):
            state = "verified" if domain.is_verified else "unverified"
            admins = ", ".join(a.email for a in domain.admins.all()) or "-"
            self.stdout.write(
                f"{domain.name}\t{state}\t{domain.accounts.count()} accounts\tadmins: {admins}"
            )

    def _show(self, options: dict) -> None:
        domain = self._domain(options["domain"])
        gateway = domain.outbound_gateway
        lines = [
            f"domain: {domain.name}",
            "ownership: "
            + (
                f"verified {domain.verified_at:%Y-%m-%d %H:%M}"
                if domain.is_verified
                else "unverified"
            ),
            f"verification record: TXT {domain.verification_record}",
            f"outbound gateway: {gateway if gateway else 'none (direct to recipients MX)'}",
            f"accounts: {domain.accounts.count()}",
            f"queued mail: {queued_count(domain)}",
            "admins: " + (", ".join(a.email for a in domain.admins.all()) or "-"),
            "OUs:",
        ]
        lines += [f"  {path}" for path in sorted(OrgUnit.objects.paths(domain.pk).values())]
        self.stdout.write("\n".join(lines))

    def _verify(self, options: dict) -> None:
        domain = self._domain(options["domain"])
        status = check_ownership(domain)
        if status == Status.FOUND:
            self.stdout.write(f"{domain.name} is verified.")
        elif status == Status.UNKNOWN:
            raise CommandError("DNS did not answer; try again later.")
        else:
            self._verification_help(domain)
            raise CommandError(f"The TXT record was not found at {domain.name}.")

    def _remove(self, options: dict) -> None:
        domain = self._domain(options["domain"])
        remove_domain(domain, force=options["force"])
        self.stdout.write(f"Removed {domain.name}.")
