"""Indexes for the console: an OU's members by address, and the sender search on PostgreSQL."""

import logging

from django.db import DatabaseError, migrations, models, transaction

# The delivery log's sender filter is a substring search (``email__icontains``, which Django sends
# as UPPER(email::text) LIKE UPPER('%…%')). A trigram index answers it without reading every
# account; SQLite has no such index and scans, which is fine at its sizes.
TRIGRAM_INDEX = (
    "CREATE INDEX IF NOT EXISTS account_email_trgm ON directory_account "
    "USING gin (UPPER(email::text) gin_trgm_ops)"
)


def add_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:
        logging.getLogger(__name__).warning(
            "pg_trgm is not available: the delivery log's sender search reads every account. "
            "To add its index, a database administrator can run CREATE EXTENSION pg_trgm; then %s;",
            TRIGRAM_INDEX,
        )
        return
    schema_editor.execute(TRIGRAM_INDEX)


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS account_email_trgm")


class Migration(migrations.Migration):

    dependencies = [
        ("directory", "0006_account_imports"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="account",
            index=models.Index(fields=["org_unit", "email", "id"], name="account_unit_email"),
        ),
        migrations.RunPython(add_trigram_index, drop_trigram_index),
    ]
