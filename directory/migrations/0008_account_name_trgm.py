"""The accounts page's search by name on PostgreSQL: a trigram index on the display name.

The search is ``email__icontains OR display_name__icontains`` within the domain; 0007 indexed the
address for the delivery log's sender filter, this indexes the name, so both halves of the OR are
index scans instead of a walk through the domain's accounts. Without pg_trgm (0007 says how to
add it) or on SQLite, nothing happens and the search scans, as before.
"""

from django.db import DatabaseError, migrations, transaction

NAME_INDEX = (
    "CREATE INDEX IF NOT EXISTS account_display_name_trgm ON directory_account "
    "USING gin (UPPER(display_name::text) gin_trgm_ops)"
)


def add_name_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute(NAME_INDEX)
    except DatabaseError:  # pg_trgm is not installed (see 0007)
        return


def drop_name_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS account_display_name_trgm")


class Migration(migrations.Migration):
    dependencies = [
        ("directory", "0007_account_indexes"),
    ]

    operations = [migrations.RunPython(add_name_index, drop_name_index)]
