"""Leave half of every account page free on PostgreSQL, so propagation's UPDATEs are HOT.

Propagation rewrites ``gateways_allowed`` and ``policy_version`` of every governed account. Neither
column is indexed, so PostgreSQL can keep the new row version on the same page and skip all of the
account table's indexes (a heap-only tuple, HOT), but only if the page has room for it. Pages filled
to the brim (the default fillfactor of 100) made every row a non-HOT update that wrote to all of
the table's indexes, two trigram GIN indexes among them: 11.8 s instead of 1.4 s for 100,000
accounts (docs/benchmarks.md). With fillfactor 50 a page has room for one new version of each of
its rows; the old versions are pruned when the page is next read, so the room comes back.

Existing rows stay where they are until they are next written: the first propagation after this
migration moves them onto half-full pages (once, at the old speed); from then on updates are HOT.
``VACUUM FULL directory_account`` does the same at once. SQLite has no fillfactor: nothing to do.
"""

from django.db import migrations

FILLFACTOR = 50


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("directory", "Account")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def fill_up(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("directory", "Account")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ("directory", "0008_account_name_trgm"),
        ("policy", "0003_policy_words_allowed_not_allowed"),
    ]

    operations = [migrations.RunPython(leave_room, fill_up)]
