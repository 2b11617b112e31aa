"""Actors and the alerts Defender raised on them."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.urls import path
from django.views.generic import ListView

from defender.models import Actor


class ActorListView(PermissionRequiredMixin, ListView):
    permission_required = "defender.view_actor"
    model = Actor


urlpatterns = [
    path("actors/", ActorListView.as_view(), name="actor-list"),
]
