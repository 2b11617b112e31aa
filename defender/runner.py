"""Where a Get alerts runs: here for Local integrations, on their remote node for Remote ones."""

from defender import alert_store
from defender.models import Integration
from defender.remote import jobs


def get_alerts(actor, integrations, since, until, user=None):
    """Ask the Local integrations now (their answers are stored when this returns) and queue the Remote ones for
    their nodes (the actor's page waits for those). Returns the queued jobs."""
    local = [integration for integration in integrations if integration.location == Integration.Location.LOCAL]
    if local:
        alert_store.fetch_alerts(actor, local, since, until)
    return [
        jobs.enqueue_alerts(actor, integration, since, until, user)
        for integration in integrations
        if integration.location == Integration.Location.REMOTE
    ]
