"""The two addresses load balancers and orchestrators ask: /healthz and /readyz."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_safe

from defender.operations import engine


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


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
