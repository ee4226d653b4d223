"""Messages carry their sender's domain (filled for existing rows), with the console's indexes."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def fill_domain(apps, schema_editor):
    Message = apps.get_model("outbox", "Message")
    Account = apps.get_model("directory", "Account")
    sender_domain = Account.objects.filter(pk=models.OuterRef("account_id")).values("domain_id")
    Message.objects.filter(domain__isnull=True).update(domain_id=models.Subquery(sender_domain))


class Migration(migrations.Migration):

    dependencies = [
        ('directory', '0002_initial'),
        ('outbox', '0005_manual_retry_audit'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='message',
            name='outbox_mess_account_61e6be_idx',
        ),
        migrations.AddField(
            model_name='message',
            name='domain',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='directory.domain'),
        ),
        migrations.RunPython(fill_domain, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['account', '-created_at', '-id'], name='message_account_recent'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['domain', '-created_at', '-id'], include=('state',), name='message_domain_recent'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['domain', 'state', '-created_at', '-id'], include=('next_attempt_at',), name='message_domain_state'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['domain', 'last_route', '-created_at', '-id'], name='message_domain_route'),
        ),
    ]
