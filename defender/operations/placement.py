"""Where an integration's work runs: here, or on the remote node it is assigned to. The one place that reads
Location."""

from defender.models import Integration


def runs_on_node(integration: Integration) -> bool:
    return integration.location == Integration.Location.REMOTE
