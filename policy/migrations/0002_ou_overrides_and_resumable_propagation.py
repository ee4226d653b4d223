import django.db.models.deletion
from django.db import migrations, models

SETTING_CHOICES = [('inherit', 'Inherit'), ('allow', 'Allow'), ('deny', 'Deny')]


def booleans_to_settings(apps, schema_editor):
    """Changes recorded before OUs could override were root saves governing every OU."""
    PolicyChange = apps.get_model('policy', 'PolicyChange')
    OrgUnit = apps.get_model('gateways', 'OrgUnit')
    for change in PolicyChange.objects.all():
        change.old_setting = 'allow' if change.old_value else 'deny'
        change.new_setting = 'allow' if change.new_value else 'deny'
        change.applied_value = change.new_value
        change.unit_ids = list(
            OrgUnit.objects.filter(domain_id=change.domain_id).values_list('pk', flat=True)
        )
        change.save(update_fields=['old_setting', 'new_setting', 'applied_value', 'unit_ids'])


class Migration(migrations.Migration):

    dependencies = [
        ('gateways', '0002_unit_names_unique_per_parent'),
        ('policy', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='UnitOverride',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('allow', models.BooleanField()),
                ('org_unit', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='policy_override', to='gateways.orgunit')),
            ],
        ),
        migrations.AddField(
            model_name='policychange',
            name='old_setting',
            field=models.CharField(choices=SETTING_CHOICES, default='deny', max_length=7),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='policychange',
            name='new_setting',
            field=models.CharField(choices=SETTING_CHOICES, default='deny', max_length=7),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='policychange',
            name='applied_value',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='policychange',
            name='unit_ids',
            field=models.JSONField(default=list),
        ),
        migrations.RunPython(booleans_to_settings, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='policychange',
            name='old_value',
        ),
        migrations.RemoveField(
            model_name='policychange',
            name='new_value',
        ),
        migrations.AddField(
            model_name='policychange',
            name='note',
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name='policychange',
            name='scope_label',
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name='policychange',
            name='cursor_pk',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='policychange',
            name='lease_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
