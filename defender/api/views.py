"""The API's endpoints: thin views over the same querysets, forms and use cases as the console."""

from datetime import UTC

import django_filters
from django import forms
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from defender.api import serializers
from defender.api.permissions import ModelPermissions
from defender.filters import active_between
from defender.models import Actor, Alert, Execution, Procedure, ProcedureMatch
from defender.operations.coverage import coverage, navigator_layer
from defender.operations.executions import ExecutionRejected, import_attire, record_procedures
from defender.views.executions import with_outcome_counts

# The largest id a database column holds: a bigger one typed in a query string is a 400, not a database error.
ID_MAX = 2**63 - 1
ID_PATTERN = r"[0-9]{1,18}"


@extend_schema_view(
    list=extend_schema(summary="List actors"),
    create=extend_schema(summary="Add an actor"),
    retrieve=extend_schema(summary="Read an actor"),
    update=extend_schema(summary="Change an actor"),
    partial_update=extend_schema(summary="Change some of an actor's fields"),
)
class ActorViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Actor.objects.order_by("name", "pk")
    lookup_value_regex = ID_PATTERN
    serializer_class = serializers.ActorSerializer
    permission_classes = [ModelPermissions]


class ExecutionFilter(django_filters.FilterSet):
    actor = django_filters.NumberFilter(field_name="actor_id", min_value=1, max_value=ID_MAX)
    source = django_filters.ChoiceFilter(choices=Execution.Source.choices)

    class Meta:
        model = Execution
        fields = ["actor", "source"]


class AlertFilter(django_filters.FilterSet):
    """The alerts table's filters: actor, severity, status, and a window of activity."""

    actor = django_filters.NumberFilter(field_name="actor_id", min_value=1, max_value=ID_MAX)
    severity = django_filters.ChoiceFilter(choices=Alert.Severity.choices)
    status = django_filters.ChoiceFilter(choices=Alert.Status.choices)
    since = django_filters.IsoDateTimeFilter(method="active", help_text="Activity at or after (ISO 8601).")
    until = django_filters.IsoDateTimeFilter(method="active", help_text="Activity at or before (ISO 8601).")

    class Meta:
        model = Alert
        fields = ["actor", "severity", "status"]

    def active(self, queryset, name, value):
        # In UTC: PostgreSQL refuses offsets past ±15:59 that ISO 8601 allows (+17:39 came from schemathesis).
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # a year-1 or year-9999 time moved out of range by its offset: nothing is that old
            return queryset.none()
        return queryset.filter(active_between(value, None) if name == "since" else active_between(None, value))


@extend_schema_view(list=extend_schema(summary="List stored alerts"), retrieve=extend_schema(summary="Read an alert"))
class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Alert.objects.order_by("-created", "-pk")
    lookup_value_regex = ID_PATTERN
    serializer_class = serializers.AlertSerializer
    permission_classes = [ModelPermissions]
    filterset_class = AlertFilter


def _procedures():
    matches = ProcedureMatch.objects.select_related("alert").order_by("pk")
    return Procedure.objects.order_by("order", "pk").prefetch_related(Prefetch("matches", matches))


@extend_schema_view(
    list=extend_schema(summary="List executions", responses=serializers.ExecutionSummarySerializer(many=True)),
    retrieve=extend_schema(summary="Read an execution with each procedure's outcome and matched alerts"),
)
class ExecutionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    permission_classes = [ModelPermissions]
    serializer_class = serializers.ExecutionSerializer
    filterset_class = ExecutionFilter
    lookup_value_regex = ID_PATTERN

    def get_queryset(self):
        executions = Execution.objects.order_by("-imported_at", "-pk")
        if self.action == "list":
            return with_outcome_counts(executions)
        return executions.prefetch_related(Prefetch("procedures", _procedures()))

    def get_serializer_class(self):
        return serializers.ExecutionSummarySerializer if self.action == "list" else serializers.ExecutionSerializer

    @extend_schema(
        summary="Add an execution: an ATTiRe log, or an actor and a list of procedures",
        description="An ATTiRe log is taken as the logger wrote it; its import options are query parameters.",
        parameters=[serializers.AttireOptionsSerializer],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            201: serializers.ExecutionSerializer,
            200: OpenApiResponse(serializers.ExecutionSerializer, description="That execution ID was imported before"),
            400: serializers.RejectedSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        body = request.data
        try:
            if isinstance(body, dict) and "attire-version" in body:
                options = serializers.AttireOptionsSerializer(data=request.query_params)
                if not options.is_valid():
                    return _rejected(options.errors)
                if options.validated_data["create_actors"] and not request.user.has_perm("defender.add_actor"):
                    self.permission_denied(request, "Creating actors needs the permission to add actors.")
                result = import_attire(body, source=Execution.Source.API, user=request.user, **options.validated_data)
            else:
                given = serializers.ProceduresInSerializer(data=body)
                if not given.is_valid():
                    return _rejected(given.errors)
                data = given.validated_data
                result = record_procedures(
                    actor=data["actor"],
                    procedures=data["procedures"],
                    source=Execution.Source.API,
                    user=request.user,
                    external_id=data.get("execution_id", ""),
                    detection_window_minutes=data.get("detection_window_minutes"),
                )
        except ExecutionRejected as rejected:
            return Response(
                {"detail": str(rejected), "field": rejected.field, "procedure": rejected.procedure},
                status=status.HTTP_400_BAD_REQUEST,
            )
        execution = self.get_queryset().get(pk=result.execution.pk)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(serializers.ExecutionSerializer(execution).data, status=code)


def _rejected(errors) -> Response:
    """A 400 in the API's rejection shape: the first of DRF's errors, and the field it is about."""
    field = next(iter(errors), "")
    return Response(
        {"detail": _first_error(errors), "field": field, "procedure": ""}, status=status.HTTP_400_BAD_REQUEST
    )


def _first_error(errors, path: str = "") -> str:
    """The first message of DRF's nested errors, with where it is: "procedures[1].technique_id: ..."."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            if value:
                where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
                return _first_error(value, where)
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            if isinstance(value, (dict, list)) and value:
                return _first_error(value, f"{path}[{index}]")
            if value and not isinstance(value, (dict, list)):
                return f"{path}: {value}" if path else str(value)
    return f"{path}: {errors}" if path else str(errors)


class CoverageView(APIView):
    permission_classes = [IsAuthenticated]
    required_permission = "defender.view_execution"

    @extend_schema(
        summary="Coverage as an ATT&CK Navigator layer (format 4.5)",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Procedures started at or after"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Procedures started at or before"),
            OpenApiParameter("actor", OpenApiTypes.INT, many=True, description="Only these actors"),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        if not request.user.has_perm(self.required_permission):
            self.permission_denied(request, message="Your group may not read executions.")
        form = CoverageQuery(request.query_params)
        if not form.is_valid():
            return Response({field: list(errors) for field, errors in form.errors.items()}, status=400)
        data = form.cleaned_data
        try:
            since, until = (data[key].astimezone(UTC) if data[key] else None for key in ("since", "until"))
        except OverflowError:
            return Response({"since": ["A time out of range."]}, status=400)
        cov = coverage(since=since, until=until, actor_ids=data["actor"] or None)
        return Response(navigator_layer(cov))


class CoverageQuery(forms.Form):
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    actor = forms.Field(required=False)  # read as a list in clean_actor

    def clean_actor(self):
        values = self.data.getlist("actor") if hasattr(self.data, "getlist") else []
        try:
            ids = [int(value) for value in values]
        except ValueError:
            raise forms.ValidationError("Give actors by their numeric id.") from None
        if any(not 0 < value < 2**63 for value in ids):
            raise forms.ValidationError("An actor id is a positive number.")
        return ids
