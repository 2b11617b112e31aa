"""Settings > Remote Nodes: add a node and see its token once, re-issue or revoke it, and see who is online."""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.db.models import Prefetch, ProtectedError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse_lazy
from django.views.generic import CreateView, DeleteView, DetailView, UpdateView, View
from django_tables2 import SingleTableView

from defender.forms.remote_nodes import RemoteNodeForm
from defender.models import Integration, RemoteNode
from defender.remote import tokens
from defender.tables.remote_nodes import RemoteNodeTable

TOKEN_FILE = "node-token.txt"


def agent_command(site_url: str, *, debug: bool) -> str:
    """The command that starts a node's agent against this site.

    Nodes reach the site over HTTPS only. A plain-HTTP URL is shown only for a development site (DEBUG on), with the
    flag the agent needs to accept it; in production HTTPS ends at the reverse proxy, so the public URL is https even
    when the request reached Django over HTTP.
    """
    parts = urlsplit(site_url)
    extra = ""
    if parts.scheme == "http":
        if debug:
            extra = " --allow-insecure-http"
        else:
            site_url = urlunsplit(parts._replace(scheme="https"))
    return f"python manage.py run_remote_node --site {site_url} --token-file {TOKEN_FILE}{extra}"


def token_page(request, node):
    """The only time a token is shown: in this response, never stored, with the command that uses it."""
    site = settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")
    command = agent_command(site, debug=settings.DEBUG)
    response = render(
        request,
        "defender/remote_nodes/token.html",
        {"node": node, "token": tokens.issue(node), "command": command, "token_file": TOKEN_FILE},
    )
    response["Cache-Control"] = "no-store"  # never kept by the browser or a proxy, so Back cannot show it again
    return response


class RemoteNodeListView(PermissionRequiredMixin, SingleTableView):
    permission_required = "defender.view_remotenode"
    table_class = RemoteNodeTable
    template_name = "defender/remote_nodes/list.html"
    queryset = RemoteNode.objects.prefetch_related(Prefetch("integrations", Integration.objects.order_by("name")))


class RemoteNodeCreateView(PermissionRequiredMixin, CreateView):
    permission_required = "defender.add_remotenode"
    model = RemoteNode
    form_class = RemoteNodeForm
    template_name = "defender/remote_nodes/form.html"

    def form_valid(self, form):
        return token_page(self.request, form.save())


class RemoteNodeUpdateView(PermissionRequiredMixin, UpdateView):
    permission_required = "defender.change_remotenode"
    model = RemoteNode
    form_class = RemoteNodeForm
    template_name = "defender/remote_nodes/form.html"

    def get_success_url(self):
        messages.success(self.request, f"Remote node {self.object.name} saved.")
        return self.object.get_absolute_url()


class RemoteNodeDetailView(PermissionRequiredMixin, DetailView):
    permission_required = "defender.view_remotenode"
    model = RemoteNode
    template_name = "defender/remote_nodes/detail.html"
    context_object_name = "node"

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            integrations=self.object.integrations.order_by("name"),
            recent_jobs=self.object.jobs.select_related("integration").order_by("-created_at")[:20],
            **kwargs,
        )


class ReissueTokenView(PermissionRequiredMixin, View):
    permission_required = "defender.change_remotenode"

    def post(self, request, pk):
        return token_page(request, get_object_or_404(RemoteNode, pk=pk))


class RevokeTokenView(PermissionRequiredMixin, View):
    permission_required = "defender.change_remotenode"

    def post(self, request, pk):
        node = get_object_or_404(RemoteNode, pk=pk)
        tokens.revoke(node)
        messages.warning(request, f"The token of {node.name} is revoked: its agent can no longer check in.")
        return redirect(node.get_absolute_url())


class RemoteNodeDeleteView(PermissionRequiredMixin, DeleteView):
    permission_required = "defender.delete_remotenode"
    model = RemoteNode
    template_name = "defender/remote_nodes/confirm_delete.html"
    context_object_name = "node"
    success_url = reverse_lazy("defender:remotenode-list")

    def form_valid(self, form):
        try:
            response = super().form_valid(form)
        except ProtectedError:
            names = ", ".join(self.object.integrations.order_by("name").values_list("name", flat=True))
            messages.error(self.request, f"{self.object.name} runs these integrations; move them first: {names}.")
            return redirect(self.object.get_absolute_url())
        messages.success(self.request, f"Remote node {self.object.name} deleted.")
        return response


urlpatterns = [
    path("settings/remote-nodes/", RemoteNodeListView.as_view(), name="remotenode-list"),
    path("settings/remote-nodes/add/", RemoteNodeCreateView.as_view(), name="remotenode-add"),
    path("settings/remote-nodes/<int:pk>/", RemoteNodeDetailView.as_view(), name="remotenode-detail"),
    path("settings/remote-nodes/<int:pk>/edit/", RemoteNodeUpdateView.as_view(), name="remotenode-edit"),
    path("settings/remote-nodes/<int:pk>/delete/", RemoteNodeDeleteView.as_view(), name="remotenode-delete"),
    path("settings/remote-nodes/<int:pk>/token/", ReissueTokenView.as_view(), name="remotenode-reissue"),
    path("settings/remote-nodes/<int:pk>/revoke/", RevokeTokenView.as_view(), name="remotenode-revoke"),
]
