"""Re-encrypt every stored secret (SMTP passwords, OAuth tokens) under the newest key in
SENDGATE_SECRETS_KEYS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from gateways.models import SmtpServer
from mailkit import secrets

ENCRYPTED_FIELDS = [
    f for f in SmtpServer._meta.concrete_fields if isinstance(f, secrets.EncryptedTextField)
]


def stored_key_ids() -> dict[tuple[int, str], str]:
    """Which key each stored secret is under, read without decrypting anything."""
    quote = connection.ops.quote_name
    table = quote(SmtpServer._meta.db_table)
    found: dict[tuple[int, str], str] = {}
    with connection.cursor() as cursor:
        for field in ENCRYPTED_FIELDS:
            column = quote(field.column)
            cursor.execute(f"SELECT id, {column} FROM {table} WHERE {column} <> ''")  # noqa: S608
            for pk, token in cursor.fetchall():
                found[(pk, field.name)] = token.partition(":")[0]
    return found


class Command(BaseCommand):
    help = (
        "Re-encrypt stored SMTP passwords and sign-in tokens under the first key of "
        "SENDGATE_SECRETS_KEYS. Put the new key first, keep the old ones after it, run this, "
        "then drop the old keys."
    )

    def handle(self, *args, **options) -> None:
        current = secrets.current_key_id()
        stale = [where for where, key_id in stored_key_ids().items() if key_id != current]
        for pk, name in stale:
            with transaction.atomic():
                try:  # loading the row decrypts its secrets
                    server = SmtpServer.objects.select_for_update().filter(pk=pk).first()
                except secrets.SecretUnreadable as exc:
                    raise CommandError(f"SMTP server {pk}: {exc}") from exc
                if server is None:
                    continue  # deleted meanwhile
                # Saving encrypts under the first key (EncryptedTextField.get_prep_value).
                SmtpServer.objects.filter(pk=pk).update(**{name: getattr(server, name)})
        left = sum(1 for key_id in stored_key_ids().values() if key_id != current)
        self.stdout.write(
            f"Re-encrypted {len(stale)} secret(s) under key {current!r}; "
            f"{left} stored under another key."
        )
