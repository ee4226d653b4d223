"""manage.py prune: remove bodies of finished messages and old records, as retention says."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from operations import retention


class Command(BaseCommand):
    help = (
        "Remove the bodies of sent or failed messages older than SENDGATE_RETENTION_BODY_DAYS "
        "(their metadata stays), and delivery attempts of finished messages and connection tests "
        "older than SENDGATE_RETENTION_RECORD_DAYS."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--body-days", type=int, help="override SENDGATE_RETENTION_BODY_DAYS")
        parser.add_argument(
            "--record-days", type=int, help="override SENDGATE_RETENTION_RECORD_DAYS"
        )

    def handle(self, *args, body_days: int | None, record_days: int | None, **options) -> None:
        for name, value in (("--body-days", body_days), ("--record-days", record_days)):
            if value is not None and value < 0:
                raise CommandError(f"{name} must be 0 (keep forever) or a number of days.")
        pruned = retention.prune(body_days, record_days)
        self.stdout.write(
            f"Removed {pruned.bodies} message bodies, {pruned.attempts} delivery attempts and "
            f"{pruned.connection_tests} connection tests."
        )
