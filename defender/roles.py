"""The two kinds of user: administrators change everything; viewers read integrations, actors and alerts, change
nothing and never run a Test."""

from django.contrib.auth.models import Group, Permission

ADMINISTRATORS = "Administrators"
VIEWERS = "Viewers"


def sync_group_permissions(**kwargs):
    """Give Administrators every permission of the defender app and Viewers its view_* ones.

    Runs after every migrate and after a test database flush (which also sends post_migrate), so the groups exist
    with the permissions of every model, including models added after the migration that created the groups.
    """
    permissions = Permission.objects.filter(content_type__app_label="defender")
    administrators, _ = Group.objects.get_or_create(name=ADMINISTRATORS)
    administrators.permissions.add(*permissions)
    viewers, _ = Group.objects.get_or_create(name=VIEWERS)
    viewers.permissions.add(*permissions.filter(codename__startswith="view_"))
