"""/api/v1/: the endpoints, the OpenAPI 3 schema and its browsable docs (Swagger UI and ReDoc, served locally)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from defender.api import views

router = SimpleRouter()
router.register("actors", views.ActorViewSet, basename="api-actor")
router.register("alerts", views.AlertViewSet, basename="api-alert")
router.register("executions", views.ExecutionViewSet, basename="api-execution")

urlpatterns = [
    *router.urls,
    path("coverage/", views.CoverageView.as_view(), name="api-coverage"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

# The API answers 401 itself (token or session): the console's login redirect is no answer for a script.
for pattern in urlpatterns:
    pattern.callback.login_required = False  # type: ignore[union-attr]
