from django.db import migrations, models

import defender.validators


class Migration(migrations.Migration):
    dependencies = [
        ("defender", "0018_alert_sync"),
    ]

    operations = [
        migrations.AddField(
            model_name="integration",
            name="calls_per_minute",
            field=models.PositiveIntegerField(
                blank=True,
                help_text=(
                    "Calls a minute this app may make to this tenant's API, shared by every worker. Blank: "
                    "Microsoft's limit (100; Graph 150)."
                ),
                null=True,
                validators=[defender.validators.validate_calls_per_minute],
                verbose_name="call budget per minute",
            ),
        ),
        migrations.AddField(
            model_name="integration",
            name="calls_per_hour",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Calls an hour, likewise. Blank: Microsoft's limit (1,500; Graph none).",
                null=True,
                validators=[defender.validators.validate_calls_per_hour],
                verbose_name="call budget per hour",
            ),
        ),
    ]
