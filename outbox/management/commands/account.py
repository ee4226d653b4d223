"""Domain admins' account commands, with the console's rules and errors (the same functions)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from directory.account_import import check_csv
from directory.accounts import DirectoryError, account_of, grant_admin, revoke_admin, unit_by_path
from directory.models import Account, Domain
from mailkit.addresses import domain_of
from outbox.onboarding import (
    add_account,
    deactivate,
    import_accounts,
    reactivate,
    send_import_invitations,
)
from policy.service import PolicyError, move_account


class Command(BaseCommand):
    help = "Add, import, deactivate, reactivate or move accounts, and grant admin rights."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--actor",
            default="",
            help="Address of the admin or operator the audit log names (default: manage.py).",
        )
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create an account and mail it an invitation.")
        add.add_argument("address")
        add.add_argument("--name", default="")
        add.add_argument("--unit", default="", help="OU path, e.g. Sales/EMEA (default: top).")
        add.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read a password from standard input instead of mailing an invitation.",
        )
        imp = sub.add_parser("import", help="Create accounts from a CSV: address,name,OU path.")
        imp.add_argument("domain")
        imp.add_argument("file", type=Path)
        imp.add_argument("--dry-run", action="store_true", help="Check only; change nothing.")
        imp.add_argument("--no-invite", action="store_true", help="Do not mail invitations.")
        for name, text in (
            ("deactivate", "Refuse the account's logins and hold its queued mail."),
            ("reactivate", "Let a deactivated account log in again."),
        ):
            sub.add_parser(name, help=text).add_argument("address")
        move = sub.add_parser("move", help="Put an account in another OU.")
        move.add_argument("address")
        move.add_argument("unit", help="OU path, e.g. Sales/EMEA.")
        admin = sub.add_parser("make-admin", help="Make an account an admin of its domain.")
        admin.add_argument("address")
        admin.add_argument("--revoke", action="store_true", help="Take the admin rights away.")

    def handle(self, *args, **options) -> None:
        self.actor = self._actor(options["actor"])
        try:
            getattr(self, "_" + options["action"].replace("-", "_"))(options)
        except (DirectoryError, PolicyError) as exc:
            raise CommandError(str(exc)) from None

    def _actor(self, address: str) -> Account | None:
        if not address:
            return None
        actor = Account.objects.filter(email__iexact=address.strip(), is_active=True).first()
        if actor is None:
            raise CommandError(f"No active account {address}.")
        return actor

    def _domain_of(self, address: str) -> Domain:
        name = domain_of(address) if "@" in address else address.strip().lower()
        domain = Domain.objects.filter(name=name).first()
        if domain is None:
            raise CommandError(f"No domain {name} is hosted here.")
        if (
            self.actor is not None
            and not Domain.objects.for_admin(self.actor).filter(pk=domain.pk).exists()
        ):
            raise CommandError(f"{self.actor.email} does not administer {domain.name}.")
        return domain

    def _account(self, address: str) -> Account:
        return account_of(self._domain_of(address), address)

    def _add(self, options: dict) -> None:
        domain = self._domain_of(options["address"])
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("No password on standard input.")
        unit = unit_by_path(domain, options["unit"])
        account = add_account(
            domain, options["address"], options["name"], unit, self.actor, password=password
        )
        sent = "" if password else "; invitation queued"
        self.stdout.write(f"Created {account.email} in {unit.path()}{sent}.")

    def _import(self, options: dict) -> None:
        domain = self._domain_of(options["domain"])
        try:
            data = options["file"].read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}.") from None
        plan = check_csv(domain, data, options["file"].name)
        if plan.errors:
            for line, error in plan.errors:
                where = f"line {line}: " if line else ""
                self.stderr.write(f"{options['file']}: {where}{error}")
            raise CommandError(f"{len(plan.errors)} errors; nothing was imported.")
        if options["dry_run"]:
            self.stdout.write(f"{len(plan.rows)} accounts would be created; nothing changed.")
            return
        job = import_accounts(plan, self.actor, invite=not options["no_invite"])
        self.stdout.write(f"Created {job.total} accounts in {domain.name}.")
        if job.invite:
            # Here, not only in a worker: the operator sees the invitations queued when it ends.
            send_import_invitations(job.pk)
            job.refresh_from_db()
            self.stdout.write(f"Queued {job.invited} invitations.")

    def _deactivate(self, options: dict) -> None:
        account = self._account(options["address"])
        held = deactivate(account, self.actor)
        self.stdout.write(
            f"Deactivated {account.email}; {held} queued messages are held until an admin "
            "delivers or discards them in the console."
        )

    def _reactivate(self, options: dict) -> None:
        account = self._account(options["address"])
        changed = reactivate(account, self.actor)
        self.stdout.write(
            f"Reactivated {account.email}." if changed else f"{account.email} is active already."
        )

    def _move(self, options: dict) -> None:
        domain = self._domain_of(options["address"])
        account = account_of(domain, options["address"])
        unit = unit_by_path(domain, options["unit"])
        moved = move_account(account, unit, self.actor)
        self.stdout.write(
            f"Moved {account.email} to {unit.path()}."
            if moved
            else f"{account.email} is in {unit.path()} already."
        )

    def _make_admin(self, options: dict) -> None:
        domain = self._domain_of(options["address"])
        account = account_of(domain, options["address"])
        if options["revoke"]:
            changed = revoke_admin(domain, account, self.actor)
            done, already = "is no longer", "was not"
        else:
            changed = grant_admin(domain, account, self.actor)
            done, already = "is now", "is already"
        self.stdout.write(f"{account.email} {done if changed else already} an admin of {domain}.")
