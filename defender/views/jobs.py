"""Waiting for a remote node: the page polls the job (htmx every second, or a refresh without JavaScript) and then
shows the same Test steps or alerts as a local integration would. While it waits, it can be cancelled."""

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views import View

from defender.models import Job
from defender.operations.answers import cancel, refreshed
from defender.operations.records import remote_test_result


def job_response(request, job):
    """The job as it stands: still waiting, or its outcome in the shape the local path shows."""
    if not job.finished:
        template = "defender/jobs/_waiting.html" if request.htmx else "defender/jobs/waiting.html"
        return render(request, template, {"job": job})
    if job.kind == Job.Kind.ALERTS:
        actor_page = reverse("defender:actor-detail", args=[job.parameters["actor_id"]])
        if request.htmx:
            # The alerts are stored: reload the actor's page so its table, filters and "last asked" show them.
            response = HttpResponse(status=204)
            response["HX-Redirect"] = actor_page
            return response
        return redirect(actor_page)
    back_links = [
        (job.integration.name, reverse("defender:integration-detail", args=[job.integration_id])),
        ("All integrations", reverse("defender:integration-list")),
    ]
    if job.state == Job.State.CANCELLED:
        template = "defender/jobs/_cancelled.html" if request.htmx else "defender/jobs/cancelled.html"
        return render(request, template, {"job": job, "back_links": back_links})
    context = {
        "title": job.integration.name,
        "result": remote_test_result(job),
        "integration": job.integration,
        "oob": True,
        "back_links": back_links,
    }
    template = "defender/jobs/_test_done.html" if request.htmx else "defender/integrations/test.html"
    return render(request, template, context)


class JobStatusView(PermissionRequiredMixin, View):
    permission_required = "defender.view_integration"

    def get(self, request, pk):
        try:
            job = refreshed(pk)
        except Job.DoesNotExist:
            raise Http404("No such job.") from None
        return job_response(request, job)


class JobCancelView(PermissionRequiredMixin, View):
    """End a job that waits for, or runs on, a remote node; a job that has just finished keeps its outcome."""

    # Whoever may start Tests and Get alerts (Administrators): a Viewer only watches.
    permission_required = ("defender.run_test", "defender.fetch_alerts")
    http_method_names = ["post"]

    def post(self, request, pk):
        job = get_object_or_404(Job.objects.select_related("integration"), pk=pk)
        if cancel(job, request.user) and job.kind == Job.Kind.ALERTS:
            messages.info(request, f"Get alerts from {job.integration.name} was cancelled.")
        if request.htmx:
            return job_response(request, refreshed(pk))
        return redirect("defender:job-status", pk)


urlpatterns = [
    path("settings/integrations/jobs/<int:pk>/", JobStatusView.as_view(), name="job-status"),
    path("settings/integrations/jobs/<int:pk>/cancel/", JobCancelView.as_view(), name="job-cancel"),
]
