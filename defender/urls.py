from defender.remote import node_api
from defender.views import actors, integrations, proxy_rules

app_name = "defender"

urlpatterns = integrations.urlpatterns + proxy_rules.urlpatterns + actors.urlpatterns + node_api.urlpatterns
