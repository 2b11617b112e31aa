"""Settings > System, and the two addresses load balancers and orchestrators ask: /healthz and /readyz."""

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_safe
from django.views.generic import TemplateView

from defender.operations import engine, system


@login_not_required
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and answers: nothing is read, not even the database, and nothing is told."""
    return HttpResponse("ok", content_type="text/plain; charset=utf-8")


@login_not_required
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Whether this site can do its work now (database, broker, a live worker): 200 if so, else 503 saying why."""
    readiness = engine.readiness()
    return JsonResponse(readiness.as_json(), status=200 if readiness.ok else 503)


class SystemView(PermissionRequiredMixin, TemplateView):
    # Administrators only. Viewers hold every view_ permission, view_worker included; change_worker is held by
    # Administrators alone (no page changes a worker: the workers write their own rows).
    permission_required = "defender.change_worker"
    template_name = "defender/system/system.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(overview=system.overview(), **kwargs)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("settings/system/", SystemView.as_view(), name="system"),
]
