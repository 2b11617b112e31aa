"""Coverage: techniques by what Defender did about them, and the ATT&CK Navigator layer of the same."""

import json

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views import View

from defender.forms.executions import CoverageForm
from defender.models import Outcome
from defender.operations.coverage import Coverage, TacticCoverage, coverage, navigator_layer
from defender.tables.executions import OUTCOME_BADGES, OUTCOME_ORDER


def _chosen(request: HttpRequest) -> tuple[CoverageForm, Coverage | None]:
    form = CoverageForm(request.GET or None)
    if request.GET and not form.is_valid():
        return form, None
    since, until = form.period() if request.GET else (None, None)
    actors = [actor.pk for actor in form.cleaned_data.get("actors", [])] if request.GET else None
    return form, coverage(since=since, until=until, actor_ids=actors)


class CoverageView(PermissionRequiredMixin, View):
    permission_required = "defender.view_execution"

    def get(self, request: HttpRequest) -> HttpResponse:
        form, cov = _chosen(request)
        tactics = cov.by_tactic() if cov else []
        context = {
            "form": form,
            "coverage": cov,
            "tactics": tactics,
            "chart": [_chart_row(tactic) for tactic in tactics],
            "totals": [(o, (cov.best_counts() if cov else {}).get(o, 0)) for o in OUTCOME_ORDER],
            "badges": {o.value: OUTCOME_BADGES[o] for o in Outcome},
            "query": request.GET.urlencode(),
        }
        return render(request, "defender/executions/coverage.html", context)


class CoverageLayerView(PermissionRequiredMixin, View):
    permission_required = "defender.view_execution"

    def get(self, request: HttpRequest) -> HttpResponse:
        form, cov = _chosen(request)
        if cov is None:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        response = HttpResponse(json.dumps(navigator_layer(cov), indent=2), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="defender-coverage-layer.json"'
        return response


def _chart_row(tactic: TacticCoverage) -> tuple[TacticCoverage, list[tuple[str, int, float]]]:
    """A tactic's bar: each outcome present, its count of techniques and its share of the bar in per cent."""
    counts = tactic.best_counts()
    total = sum(counts.values())
    return tactic, [(o, counts.get(o, 0), 100 * counts.get(o, 0) / total) for o in OUTCOME_ORDER if counts.get(o)]


urlpatterns = [
    path("coverage/", CoverageView.as_view(), name="coverage"),
    path("coverage/layer.json", CoverageLayerView.as_view(), name="coverage-layer"),
]
