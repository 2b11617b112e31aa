"""Settings > Integrations."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import redirect
from django.urls import path
from django.views.generic import ListView

from defender.models import Integration


def home(request):
    return redirect("defender:integration-list")


class IntegrationListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_integration"
    queryset = Integration.objects.select_related("proxy_rule")


urlpatterns = [
    path("", home, name="home"),
    path("settings/integrations/", IntegrationListView.as_view(), name="integration-list"),
]
