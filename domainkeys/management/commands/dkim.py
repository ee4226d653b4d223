"""`manage.py dkim generate|check|list DOMAIN`: DKIM keys from the command line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from directory.models import Domain
from domainkeys.keys import check_dns, generate_key
from domainkeys.models import DkimKey


class Command(BaseCommand):
    help = (
        "Generate a DKIM key for a hosted domain and print the DNS record to publish; check the "
        "published records (a waiting key starts signing once its record matches); list keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["generate", "check", "list"])
        parser.add_argument("domain", help="a hosted domain, e.g. example.org")
        parser.add_argument(
            "--algorithm",
            choices=[a.value for a in DkimKey.Algorithm],
            default=DkimKey.Algorithm.RSA.value,
            help="generate: rsa (2048 bits, the default) or ed25519",
        )

    def handle(self, *args, action: str, domain: str, algorithm: str, **options) -> None:
        try:
            hosted = Domain.objects.get(name=domain.strip().lower().rstrip("."))
        except Domain.DoesNotExist:
            raise CommandError(f"{domain} is not a hosted domain.") from None
        if action == "generate":
            key = generate_key(hosted, algorithm)
            self.stdout.write(f"New {key.get_algorithm_display()} key, selector {key.selector}.")
            self.stdout.write("Publish this TXT record, then run `manage.py dkim check`:")
            self._show(key)
        elif action == "check":
            keys = list(hosted.dkim_keys.exclude(state=DkimKey.State.RETIRING))
            if not keys:
                raise CommandError(f"{hosted.name} has no DKIM key; generate one first.")
            for key in keys:
                check_dns(key)
                self.stdout.write(f"{key.selector}: {key.get_state_display()}. {key.check_result}")
        else:
            for key in hosted.dkim_keys.all():
                state = key.get_state_display()
                if key.state == DkimKey.State.RETIRING:
                    state += f", keep published until {key.retire_after:%Y-%m-%d}"
                self.stdout.write(f"{key.selector} ({key.get_algorithm_display()}): {state}")
                self._show(key)

    def _show(self, key: DkimKey) -> None:
        self.stdout.write(f"  {key.record_name}. IN TXT")
        self.stdout.write(f"  {key.zone_file_text}")
