from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete, post_migrate


class DefenderConfig(AppConfig):
    name = "defender"
    verbose_name = "Defender ATP integrations"

    def ready(self):
        from defender import logins
        from defender.fields import json_as_text
        from defender.models import Integration
        from defender.roles import sync_group_permissions
        from integrations_site.private_files import make_sqlite_file_private

        # After auth has created this app's permissions (post_migrate of every app runs in order).
        post_migrate.connect(sync_group_permissions, dispatch_uid="defender-sync-group-permissions")
        logins.connect()
        # A deleted integration's schedules (health check, alert sweep) go with it.
        post_delete.connect(_integration_deleted, sender=Integration, dispatch_uid="defender-health-schedule")
        connection_created.connect(make_sqlite_file_private, dispatch_uid="defender-private-sqlite-file")
        connection_created.connect(json_as_text, dispatch_uid="defender-json-as-text")
        _configure_call_budget()


def _configure_call_budget():
    """Where every call's budget is counted: the same for the site's workers and a remote node's agent."""
    from django.conf import settings

    from defender.services import budget

    budget.configure(
        redis_url=getattr(settings, "CALL_BUDGET_REDIS_URL", ""),
        broker_url=getattr(settings, "CELERY_BROKER_URL", ""),
        wait_seconds=float(getattr(settings, "CALL_BUDGET_WAIT_SECONDS", budget.DEFAULT_WAIT_SECONDS)),
    )


def _integration_deleted(sender, instance, **kwargs):
    # Imported when called: the remote node's agent loads this app without django-celery-beat.
    from defender.operations import health

    health.integration_deleted(sender, instance, **kwargs)
    if instance.sync_schedule_id is not None:
        from django_celery_beat.models import PeriodicTask

        PeriodicTask.objects.filter(pk=instance.sync_schedule_id).delete()
