"""Re-encrypt every stored secret (SMTP passwords, OAuth tokens, DKIM private keys) under the
newest key in SENDGATE_SECRETS_KEYS."""

from __future__ import annotations

from typing import cast

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from domainkeys.models import DkimKey
from gateways.models import SmtpServer
from mailkit import secrets

# Every encrypted column: (model, field name, a row's name, the secrets' name).
ENCRYPTED = [
    (SmtpServer, "password", "SMTP server", "password(s)"),
    (SmtpServer, "oauth_refresh_token", "SMTP server", "refresh token(s)"),
    (SmtpServer, "oauth_access_token", "SMTP server", "access token(s)"),
    (DkimKey, "private_key", "DKIM key", "DKIM private key(s)"),
]


def stored_key_ids(model: type[models.Model], field: str) -> dict[int, str]:
    """Which key each stored secret is under, read without decrypting anything."""
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(cast(models.Field, model._meta.get_field(field)).column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {column} FROM {table} WHERE {column} <> ''")  # noqa: S608
        return {pk: token.partition(":")[0] for pk, token in cursor.fetchall()}


class Command(BaseCommand):
    help = (
        "Re-encrypt stored SMTP passwords, sign-in tokens and DKIM private keys under the first "
        "key of SENDGATE_SECRETS_KEYS. Put the new key first, keep the old ones after it, run "
        "this, then drop the old keys."
    )

    def handle(self, *args, **options) -> None:
        current = secrets.current_key_id()
        for model, field, what, noun in ENCRYPTED:
            stale = [pk for pk, key_id in stored_key_ids(model, field).items() if key_id != current]
            for pk in stale:
                with transaction.atomic():
                    try:  # loading the row decrypts its secret
                        row = model._default_manager.select_for_update().filter(pk=pk).first()
                    except secrets.SecretUnreadable as exc:
                        raise CommandError(f"{what} {pk}: {exc}") from exc
                    if row is None:
                        continue  # deleted meanwhile
                    # Saving encrypts under the first key (EncryptedTextField.get_prep_value).
                    model._default_manager.filter(pk=pk).update(**{field: getattr(row, field)})
            left = sum(1 for k in stored_key_ids(model, field).values() if k != current)
            self.stdout.write(
                f"Re-encrypted {len(stale)} {noun} under key {current!r}; "
                f"{left} stored under another key."
            )
