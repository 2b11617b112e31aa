"""Create the Administrators and Viewers groups. Their permissions are kept in step by defender.roles after every
migrate, so that models added later are covered without a migration per model."""

from django.db import migrations

GROUP_NAMES = ("Administrators", "Viewers")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in GROUP_NAMES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("defender", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
