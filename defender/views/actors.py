"""Actors and the alerts Defender raised on them."""

from typing import Any

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils import timezone
from django.views import View
from django.views.generic import CreateView, DeleteView, DetailView, UpdateView
from django_htmx.http import replace_url
from django_tables2 import RequestConfig, SingleTableView

from defender import alert_export, alert_store
from defender.filters import ANY_TIME, COUNTED_UP_TO, AlertFilter, window_counts
from defender.forms.actors import ActorForm, AlertFetchForm
from defender.models import Actor, Execution
from defender.operations import sync
from defender.operations.alerts import get_alerts, pending_alert_jobs
from defender.tables.actors import ActorTable
from defender.tables.alerts import AlertTable
from defender.views.executions import with_outcome_counts

ALERTS_PER_PAGE = 50
# The actor page lists its latest executions; the Executions list filtered by the actor has them all.
EXECUTIONS_SHOWN = 5


# The time filter's fields: a Get alerts resets them, so the table shows the window just asked.
TIME_FILTER_FIELDS = ("period", "since", "until", "tz")


def shown_alerts(request, actor, fetches, exclude=()):
    """The actor's stored alerts as the table shows them (filter and sort from the query string), with the table."""
    alert_filter = AlertFilter(request.GET, queryset=alert_store.stored_alerts(actor), fetches=fetches)
    table = AlertTable(alert_filter.qs, actor=actor, exclude=exclude, columns=request.GET.getlist("columns"))
    return alert_filter, table


def alerts_section(request, actor, fetch_form=None):
    """What the Alerts section of an actor's page shows; the page and the htmx swap after Get alerts share it."""
    # First: a remote ask whose time is up ends here, and its failure is then among the asks shown.
    pending_jobs = pending_alert_jobs(actor)
    fetches = list(alert_store.last_fetches(actor))
    # Alerts only come from integrations that were asked: with one, an Integration column would say the same thing.
    alert_filter, table = shown_alerts(request, actor, fetches, exclude=("integration",) if len(fetches) < 2 else ())
    paginate: dict[str, Any] = {"per_page": ALERTS_PER_PAGE}
    every_alert = alert_filter.is_valid() and not alert_filter.is_filtering and alert_filter.window.is_any_time
    if every_alert and actor.alert_count > COUNTED_UP_TO:
        # Every stored alert is in the table: the actor's kept count says how many, once there are many to count.
        paginate["known_count"] = actor.alert_count
    RequestConfig(request, paginate=paginate).configure(table)
    if request.user.has_perm("defender.fetch_alerts"):
        fetch_form = fetch_form or AlertFetchForm(remembered=AlertFetchForm.recall(request.session, actor))
    window = alert_filter.window
    # The table has counted the rows in the window already when neither severity nor status narrow it.
    shown = table.paginator.count if alert_filter.is_valid() and not alert_filter.is_filtering else None
    counts = window_counts(alert_store.stored_alerts(actor), window, fetches, actor.alert_count, shown)
    return {
        "actor": actor,
        "fetch_form": fetch_form,
        "fetches": [(fetch, counts.by_fetch[fetch.pk]) for fetch in fetches],
        "pending_jobs": pending_jobs,
        "syncs": sync.last_syncs(),
        "alert_filter": alert_filter,
        "window": window,
        "counts": counts,
        "table": table,
        "server_zone": timezone.get_current_timezone_name(),
        "query": query_without(request.GET, "page"),
        "show_all_query": query_without(request.GET, "page", *TIME_FILTER_FIELDS, period=ANY_TIME),
        "clear_filter_query": query_without(request.GET, "page", "severity", "status"),
    }


def query_without(query, *names, **values):
    """The query string without the named parameters (and with the given ones), for a link that keeps the rest."""
    query = query.copy()
    for name in names:
        query.pop(name, None)
    for name, value in values.items():
        query[name] = value
    return query.urlencode()


class ActorListView(PermissionRequiredMixin, SingleTableView):
    permission_required = "defender.view_actor"
    # alert_count is kept on the row: the page and its pagination COUNT read the actors only, never their alerts.
    queryset = Actor.objects.all()
    table_class = ActorTable
    template_name = "defender/actors/list.html"


class ActorFormMixin(PermissionRequiredMixin, SuccessMessageMixin):
    model = Actor
    # Typed as Django declares these, so that the views mixing this in agree with it.
    form_class: type[Any] | None = ActorForm
    template_name: str | None = "defender/actors/form.html"

    def get_success_url(self):
        return reverse("defender:actor-detail", args=[self.object.pk])


class ActorCreateView(ActorFormMixin, CreateView):
    permission_required = "defender.add_actor"
    success_message = "Actor %(name)s added."


class ActorUpdateView(ActorFormMixin, UpdateView):
    permission_required = "defender.change_actor"
    success_message = "Actor %(name)s saved."


class ActorDeleteView(PermissionRequiredMixin, SuccessMessageMixin, DeleteView):
    permission_required = "defender.delete_actor"
    model = Actor
    template_name = "defender/actors/confirm_delete.html"
    success_url = reverse_lazy("defender:actor-list")
    success_message = "Actor %(name)s deleted, with its stored alerts."

    def get_success_message(self, cleaned_data):
        return self.success_message % {"name": self.object.name}


class ActorDetailView(PermissionRequiredMixin, DetailView):
    permission_required = "defender.view_actor"
    model = Actor
    template_name = "defender/actors/detail.html"

    def get_template_names(self):
        # After Get alerts, htmx follows the redirect here and swaps in the Alerts section.
        return ["defender/actors/_alerts.html"] if self.request.htmx else super().get_template_names()

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        # The address bar then says what the section shows, so a reload or a shared link shows it again.
        return replace_url(response, self.request.get_full_path()) if self.request.htmx else response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs) | alerts_section(self.request, self.object)
        if not self.request.htmx:
            recent = Execution.objects.filter(actor=self.object).select_related("imported_by")
            context["executions"] = with_outcome_counts(recent)[:EXECUTIONS_SHOWN]
        return context


class GetAlertsView(PermissionRequiredMixin, View):
    """Get alerts: ask the chosen integrations, store what they answer, then show the stored rows."""

    permission_required = "defender.fetch_alerts"
    http_method_names = ["post"]

    def post(self, request, pk):
        actor = get_object_or_404(Actor, pk=pk)
        form = AlertFetchForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            get_alerts(actor, list(data["integrations"]), data["since"], data["until"], request.user)
            form.remember(request.session, actor)
            # Back to the actor's page on the window just asked, keeping the sort and the other filters; htmx
            # follows the redirect and asks for the Alerts section only.
            query = query_without(request.GET, "page", *TIME_FILTER_FIELDS)
            return redirect(reverse("defender:actor-detail", args=[pk]) + (f"?{query}" if query else ""))
        context = alerts_section(request, actor, form)
        template = "defender/actors/_alerts.html" if request.htmx else "defender/actors/detail.html"
        return render(request, template, context | {"object": actor})


class AlertCsvView(PermissionRequiredMixin, View):
    """Export CSV: the stored alerts the table shows, every page of them, streamed."""

    permission_required = ("defender.view_actor", "defender.view_alert")

    def get(self, request, pk):
        actor = get_object_or_404(Actor, pk=pk)
        _, table = shown_alerts(request, actor, list(alert_store.last_fetches(actor)))
        RequestConfig(request, paginate=False).configure(table)
        return alert_export.csv_response(actor, table.sorted_alerts())


class AlertDetailView(PermissionRequiredMixin, View):
    """One stored alert with everything kept of it: its fields, its evidence, who returned it, and the raw JSON."""

    permission_required = ("defender.view_actor", "defender.view_alert")

    def get(self, request, pk, alert_pk):
        actor = get_object_or_404(Actor, pk=pk)
        alert = alert_store.stored_alert(actor, alert_pk)
        if alert is None:
            raise Http404("No such alert of this actor.")
        return render(request, "defender/actors/alert.html", {"actor": actor, "alert": alert})


urlpatterns = [
    path("actors/", ActorListView.as_view(), name="actor-list"),
    path("actors/add/", ActorCreateView.as_view(), name="actor-add"),
    path("actors/<int:pk>/", ActorDetailView.as_view(), name="actor-detail"),
    path("actors/<int:pk>/edit/", ActorUpdateView.as_view(), name="actor-edit"),
    path("actors/<int:pk>/delete/", ActorDeleteView.as_view(), name="actor-delete"),
    path("actors/<int:pk>/alerts/", GetAlertsView.as_view(), name="actor-get-alerts"),
    path("actors/<int:pk>/alerts.csv", AlertCsvView.as_view(), name="actor-alerts-csv"),
    path("actors/<int:pk>/alerts/<int:alert_pk>/", AlertDetailView.as_view(), name="actor-alert"),
]
