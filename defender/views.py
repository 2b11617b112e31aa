from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import redirect
from django.views.generic import ListView

from defender.models import Actor, Integration, ProxyRule


def home(request):
    return redirect("defender:integration-list")


class IntegrationListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_integration"
    queryset = Integration.objects.select_related("proxy_rule")


class ProxyRuleListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_proxyrule"
    model = ProxyRule


class ActorListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_actor"
    model = Actor
