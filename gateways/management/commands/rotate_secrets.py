"""Re-encrypt every stored SMTP password under the newest key in SENDGATE_SECRETS_KEYS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from gateways.models import SmtpServer
from mailkit import secrets


def stored_key_ids() -> dict[int, str]:
    """Which key each stored password is under, read without decrypting anything."""
    table = connection.ops.quote_name(SmtpServer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, password FROM {table} WHERE password <> ''")  # noqa: S608
        return {pk: token.partition(":")[0] for pk, token in cursor.fetchall()}


class Command(BaseCommand):
    help = (
        "Re-encrypt stored SMTP passwords under the first key of SENDGATE_SECRETS_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args, **options) -> None:
        current = secrets.current_key_id()
        stale = [pk for pk, key_id in stored_key_ids().items() if key_id != current]
        for pk in stale:
            with transaction.atomic():
                try:  # loading the row decrypts its password
                    server = SmtpServer.objects.select_for_update().filter(pk=pk).first()
                except secrets.SecretUnreadable as exc:
                    raise CommandError(f"SMTP server {pk}: {exc}") from exc
                if server is None:
                    continue  # deleted meanwhile
                password = server.password
                # Saving encrypts under the first key (EncryptedTextField.get_prep_value).
                SmtpServer.objects.filter(pk=pk).update(password=password)
        left = sum(1 for key_id in stored_key_ids().values() if key_id != current)
        self.stdout.write(
            f"Re-encrypted {len(stale)} password(s) under key {current!r}; "
            f"{left} stored under another key."
        )
