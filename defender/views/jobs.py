"""Waiting for a remote node: the page polls the job (htmx every second, or a refresh without JavaScript) and then
shows the same Test steps or alerts as a local integration would."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views import View

from defender.models import Job
from defender.remote import jobs, results


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
    context = {
        "title": job.integration.name,
        "result": results.test_result_of(job),
        "integration": job.integration,
        "oob": True,
        "back_links": [
            (job.integration.name, reverse("defender:integration-detail", args=[job.integration_id])),
            ("All integrations", reverse("defender:integration-list")),
        ],
    }
    template = "defender/jobs/_test_done.html" if request.htmx else "defender/integrations/test.html"
    return render(request, template, context)


class JobStatusView(PermissionRequiredMixin, View):
    permission_required = "defender.view_integration"

    def get(self, request, pk):
        try:
            job = jobs.refreshed(pk)
        except Job.DoesNotExist:
            raise Http404("No such job.") from None
        return job_response(request, job)


urlpatterns = [
    path("settings/integrations/jobs/<int:pk>/", JobStatusView.as_view(), name="job-status"),
]
