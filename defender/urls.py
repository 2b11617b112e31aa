from defender.remote import node_api
from defender.views import (
    actors,
    api_tokens,
    coverage,
    executions,
    integrations,
    jobs,
    proxy_rules,
    remote_nodes,
    system,
    test_runs,
)

app_name = "defender"

urlpatterns = (
    integrations.urlpatterns
    + proxy_rules.urlpatterns
    + remote_nodes.urlpatterns
    + jobs.urlpatterns
    + test_runs.urlpatterns
    + actors.urlpatterns
    + executions.urlpatterns
    + coverage.urlpatterns
    + api_tokens.urlpatterns
    + node_api.urlpatterns
    + system.urlpatterns
)
