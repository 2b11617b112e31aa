import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_each_alerts_actor(apps, schema_editor):
    Alert = apps.get_model("defender", "Alert")
    AlertSource = apps.get_model("defender", "AlertSource")
    AlertSource.objects.update(actor_id=Subquery(Alert.objects.filter(pk=OuterRef("alert_id")).values("actor_id")[:1]))


def source_actor(**options):
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        editable=False,
        on_delete=django.db.models.deletion.CASCADE,
        related_name="+",
        to="defender.actor",
        **options,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("defender", "0022_executions_and_outcomes"),
    ]

    operations = [
        # Nullable until every source has its alert's actor, then required.
        migrations.AddField(model_name="alertsource", name="actor", field=source_actor(null=True)),
        migrations.RunPython(copy_each_alerts_actor, migrations.RunPython.noop),
        migrations.AlterField(model_name="alertsource", name="actor", field=source_actor()),
        migrations.AddIndex(
            model_name="alertsource",
            index=models.Index(fields=["actor", "integration", "alert"], name="alert_source_actor"),
        ),
        migrations.RemoveIndex(model_name="alert", name="alert_actor_created_sort"),
        migrations.AddIndex(
            model_name="alert",
            index=models.Index(
                fields=["actor", "-created", "-id"], include=["first_event", "last_event"], name="alert_actor_created_sort"
            ),
        ),
    ]
