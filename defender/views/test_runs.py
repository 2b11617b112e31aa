"""A Test run's page: its steps so far, polled by htmx (or refreshed without JavaScript) until the run is finished.
One page and one partial for every Test: a saved integration's, typed values', a Remote integration's (waiting for
its node meanwhile) and a proxy rule's."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views import View

from defender.models import TestRun
from defender.operations.checks import refreshed_run

PANEL = "defender/test_runs/_run.html"


def run_context(run):
    """What the run's partial shows: the run, its job (while it waits for a node) and the integration whose badge a
    finished run updates."""
    tested = run.integration if run.subject == TestRun.Subject.INTEGRATION else None
    return {"run": run, "job": run.job, "integration": tested}


def started(request, run):
    """The answer to a Test button: the run's panel, which polls the run, for htmx; else the run's own page (303, so
    that a reload does not start another Test)."""
    if request.htmx:
        return render(request, PANEL, {**run_context(run), "oob": True})
    return HttpResponseRedirect(run.get_absolute_url(), status=303)


def back_links(run):
    if run.integration_id:
        return [
            (run.integration.name, reverse("defender:integration-detail", args=[run.integration_id])),
            ("All integrations", reverse("defender:integration-list")),
        ]
    if run.proxy_rule_id:
        return [
            (run.proxy_rule.name, reverse("defender:proxyrule-detail", args=[run.proxy_rule_id])),
            ("All proxy rules", reverse("defender:proxyrule-list")),
        ]
    return [("All integrations", reverse("defender:integration-list"))]


class TestRunDetailView(PermissionRequiredMixin, View):
    permission_required = "defender.view_integration"

    def get(self, request, pk):
        try:
            run = refreshed_run(pk)
        except TestRun.DoesNotExist:
            raise Http404("No such Test run.") from None
        if request.htmx:
            return render(request, PANEL, {**run_context(run), "oob": True})
        return render(request, "defender/test_runs/detail.html", {**run_context(run), "back_links": back_links(run)})


urlpatterns = [
    path("settings/test-runs/<int:pk>/", TestRunDetailView.as_view(), name="testrun-detail"),
]
