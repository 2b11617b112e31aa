"""Settings > Proxy Rules."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.urls import path
from django.views.generic import ListView

from defender.models import ProxyRule


class ProxyRuleListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_proxyrule"
    model = ProxyRule


urlpatterns = [
    path("settings/proxy-rules/", ProxyRuleListView.as_view(), name="proxyrule-list"),
]
