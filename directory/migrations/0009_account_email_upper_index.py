"""Submission logins look an account up by address in any case: an index on UPPER(email).

``email__iexact`` is ``UPPER(email::text) = UPPER(%s)`` on PostgreSQL, which the unique index on
``email`` cannot serve: at 100,000 accounts each login scanned the table (19-35 ms).
"""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("directory", "0008_account_name_trgm"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="account",
            index=models.Index(
                django.db.models.functions.text.Upper("email"), name="account_email_upper"
            ),
        ),
    ]
