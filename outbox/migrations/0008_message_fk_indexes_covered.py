"""Drop the single-column indexes of Message.account and Message.domain: message_account_recent and
message_domain_recent start with those columns and serve the same look-ups, while every index of
the outbox is written at each insert and at each change of state.

Dropped by name, not with AlterField's schema change: on SQLite that would copy the whole table
(every message's bytes) to drop an index.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

DROP = [
    "DROP INDEX IF EXISTS outbox_message_account_id_00e23ca3",
    "DROP INDEX IF EXISTS outbox_message_domain_id_713b4133",
]
CREATE = [
    'CREATE INDEX outbox_message_account_id_00e23ca3 ON outbox_message ("account_id")',
    'CREATE INDEX outbox_message_domain_id_713b4133 ON outbox_message ("domain_id")',
]


class Migration(migrations.Migration):
    dependencies = [
        ("directory", "0010_account_time_zone"),
        ("outbox", "0007_message_due_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(DROP, reverse_sql=CREATE)],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="messages",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="domain",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="directory.domain",
                    ),
                ),
            ],
        ),
    ]
