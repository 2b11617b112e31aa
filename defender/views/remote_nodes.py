"""Settings > Remote Nodes: add a node and see its token once, re-issue or revoke it, and see who is online."""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.db.models import Prefetch, ProtectedError, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse_lazy
from django.views.generic import CreateView, DeleteView, DetailView, UpdateView, View
from django_tables2 import SingleTableView

from defender.forms.remote_nodes import RemoteNodeForm
from defender.models import Integration, Job, RemoteNode
from defender.remote import tokens
from defender.tables.remote_nodes import RemoteNodeTable

TOKEN_FILE = "node-token.txt"


def agent_command(request) -> str:
    """The command that starts a node's agent against this site, with its token in TOKEN_FILE.

    Nodes reach the site over HTTPS only. A plain-HTTP URL is shown only for a development site (DEBUG on), with the
    flag the agent needs to accept it; in production HTTPS ends at the reverse proxy, so the public URL is https even
    when the request reached Django over HTTP.
    """
    site = settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")
    parts = urlsplit(site)
    extra = ""
    if parts.scheme == "http":
        if settings.DEBUG:
            extra = " --allow-insecure-http"
        else:
            site = urlunsplit(parts._replace(scheme="https"))
    return f"python manage.py run_remote_node --site {site} --token-file {TOKEN_FILE}{extra}"


def token_page(request, node):
    """The only time a token is shown: in this response, never stored, with the command that uses it."""
    command = agent_command(request)
    context = {"node": node, "command": command, "token_file": TOKEN_FILE}
    context["integrations"] = secrets_moved_by_new_token(node)
    response = render(request, "defender/remote_nodes/token.html", {**context, "token": tokens.issue(node)})
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
        node = self.object
        # A queued job has no node yet: it is this node's when its integration is assigned here.
        jobs = Job.objects.filter(Q(node=node) | Q(node=None, state=Job.State.QUEUED, integration__remote_node=node))
        return super().get_context_data(
            integrations=node.integrations.order_by("name"),
            recent_jobs=jobs.select_related("integration").order_by("-created_at")[:20],
            agent_command=agent_command(self.request),
            token_file=TOKEN_FILE,
            **kwargs,
        )


class TokenConfirmView(PermissionRequiredMixin, DetailView):
    """Before a token is re-issued or revoked: what stops working, and which integrations it touches."""

    permission_required = "defender.change_remotenode"
    model = RemoteNode
    context_object_name = "node"
    affected = None  # the node's integrations the page lists

    def get_context_data(self, **kwargs):
        return super().get_context_data(integrations=self.affected(self.object), **kwargs)


def secrets_moved_by_new_token(node):
    """The node's Remote integrations with a saved credential (secret or certificate): a new token sends them to
    whoever holds it."""
    return [integration for integration in remote_integrations(node) if integration.has_credential]


class ReissueTokenView(PermissionRequiredMixin, View):
    permission_required = "defender.change_remotenode"

    def post(self, request, pk):
        return token_page(request, get_object_or_404(RemoteNode, pk=pk))


def remote_integrations(node):
    """The integrations this node runs: revoking its token leaves their jobs waiting."""
    return node.integrations.filter(location=Integration.Location.REMOTE).order_by("name")


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

    def get_context_data(self, **kwargs):
        return super().get_context_data(integrations=self.object.integrations.order_by("name"), **kwargs)

    def form_valid(self, form):
        try:
            response = super().form_valid(form)
        except ProtectedError:
            # An integration was assigned after the page was shown: say so on the same page.
            messages.error(self.request, f"Remote node {self.object.name} runs integrations; move them first.")
            return self.render_to_response(self.get_context_data(form=form), status=409)
        messages.success(self.request, f"Remote node {self.object.name} was deleted.")
        return response


urlpatterns = [
    path("settings/remote-nodes/", RemoteNodeListView.as_view(), name="remotenode-list"),
    path("settings/remote-nodes/add/", RemoteNodeCreateView.as_view(), name="remotenode-add"),
    path("settings/remote-nodes/<int:pk>/", RemoteNodeDetailView.as_view(), name="remotenode-detail"),
    path("settings/remote-nodes/<int:pk>/edit/", RemoteNodeUpdateView.as_view(), name="remotenode-edit"),
    path("settings/remote-nodes/<int:pk>/delete/", RemoteNodeDeleteView.as_view(), name="remotenode-delete"),
    path(
        "settings/remote-nodes/<int:pk>/token/confirm/",
        TokenConfirmView.as_view(
            template_name="defender/remote_nodes/confirm_reissue.html", affected=secrets_moved_by_new_token
        ),
        name="remotenode-reissue-confirm",
    ),
    path("settings/remote-nodes/<int:pk>/token/", ReissueTokenView.as_view(), name="remotenode-reissue"),
    path(
        "settings/remote-nodes/<int:pk>/revoke/confirm/",
        TokenConfirmView.as_view(
            template_name="defender/remote_nodes/confirm_revoke.html", affected=remote_integrations
        ),
        name="remotenode-revoke-confirm",
    ),
    path("settings/remote-nodes/<int:pk>/revoke/", RevokeTokenView.as_view(), name="remotenode-revoke"),
]
