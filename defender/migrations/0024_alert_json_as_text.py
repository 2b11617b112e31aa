import defender.fields
from django.db import migrations

COLUMNS = ("raw", "evidence", "mitre_techniques")


def retype(apps, schema_editor, to):
    # The three columns in one statement: PostgreSQL rewrites the table once, not once a column. Other databases keep
    # JSON as text either way, so nothing changes there.
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        if cursor.fetchone()[0]:
            cursor.execute("SET LOCAL default_toast_compression = lz4")
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {to} USING {column}::{to}" for column in COLUMNS)
        cursor.execute(f"ALTER TABLE defender_alert {changes}")


class Migration(migrations.Migration):
    dependencies = [
        ("defender", "0023_alert_source_actor"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(
                    lambda apps, editor: retype(apps, editor, "json"),
                    lambda apps, editor: retype(apps, editor, "jsonb"),
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="alert",
                    name="mitre_techniques",
                    field=defender.fields.StoredJSONField(blank=True, default=list, verbose_name="MITRE techniques"),
                ),
                migrations.AlterField(
                    model_name="alert",
                    name="evidence",
                    field=defender.fields.StoredJSONField(blank=True, default=list),
                ),
                migrations.AlterField(
                    model_name="alert",
                    name="raw",
                    field=defender.fields.StoredJSONField(blank=True, default=dict),
                ),
            ],
        ),
    ]
