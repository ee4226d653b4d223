"""Scripted admin of the per-user gateway policy: `policy show DOMAIN`, `policy set DOMAIN ...`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from directory.accounts import DirectoryError, unit_by_path
from directory.models import Account, Domain, OrgUnit
from policy.models import Setting
from policy.service import PolicyError, policy_tree, set_unit_policy


class Command(BaseCommand):
    help = (
        "Show the per-user outbound gateway policy of a domain's OU tree, or set it for the "
        "domain or one OU. A save is recorded in the audit log and propagated like one made in "
        "the console."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="Print every OU with its effective value.")
        show.add_argument("domain")
        put = sub.add_parser("set", help="Save allow, deny or inherit for the domain or an OU.")
        put.add_argument("domain")
        put.add_argument("setting", choices=[choice.value for choice in Setting])
        put.add_argument(
            "--unit",
            default="",
            help="OU path below the domain, e.g. Sales/EMEA (default: the whole domain).",
        )
        put.add_argument(
            "--actor",
            required=True,
            help="Address of the operator or domain admin the audit log names for this save.",
        )

    def handle(self, *args, **options) -> None:
        domain = Domain.objects.filter(name=options["domain"].lower()).first()
        if domain is None:
            raise CommandError(f"No domain {options['domain']}.")
        if options["action"] == "show":
            self._show(domain)
        else:
            self._set(domain, options)

    def _show(self, domain: Domain) -> None:
        for row in policy_tree(domain):
            value = "allow" if row.effective else "deny"
            where = "set here" if row.set_here else f"inherited from {row.source.name}"
            self.stdout.write(f"{'  ' * row.depth}{row.unit.name}: {value} ({where})")
        change = domain.policy_changes.first()
        if change is not None:
            if change.is_propagating:
                state = f"propagating, {change.shown_applied} of {change.accounts_total} accounts"
            elif change.finished_at:
                state = f"applied at {change.finished_at.isoformat()}"
            else:
                state = "replaced by a newer change"
            self.stdout.write(f"latest change: version {change.version}, {state}")

    def _set(self, domain: Domain, options: dict) -> None:
        actor = Account.objects.filter(email__iexact=options["actor"]).first()
        if actor is None or not Domain.objects.for_admin(actor).filter(pk=domain.pk).exists():
            raise CommandError(
                f"{options['actor']} is neither an operator nor an admin of {domain.name}."
            )
        unit = self._unit(domain, options["unit"])
        try:
            change = set_unit_policy(unit, Setting(options["setting"]), actor)
        except PolicyError as exc:
            raise CommandError(str(exc)) from exc
        if change is None:
            self.stdout.write(f"{unit.path()} is already {options['setting']}: nothing changed.")
            return
        self.stdout.write(
            f"{change.scope_label}: {change.old_setting} -> {change.new_setting} "
            f"(version {change.version}); propagating to {change.accounts_total} accounts."
        )

    def _unit(self, domain: Domain, path: str) -> OrgUnit:
        try:
            return unit_by_path(domain, path)
        except DirectoryError as exc:
            raise CommandError(str(exc)) from None
