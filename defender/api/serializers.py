"""What the API reads and writes. Validation is the console's own: an actor goes through ActorForm, an execution
through the import use case, so the API can accept nothing the pages would refuse."""

from typing import Any

from rest_framework import serializers

from defender.forms.actors import ActorForm
from defender.models import Actor, Alert, Execution, Outcome, Procedure, ProcedureMatch


class ActorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Actor
        fields = ["id", "name", "hostname", "alternate_hostname", "ip_address", "operating_system", "notes",
                  "alert_count", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["alert_count", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The console's form decides: the same messages, field by field."""
        instance = self.instance
        if instance:
            current = {name: getattr(instance, name) for name in ActorForm.Meta.fields}
        else:
            current = {"operating_system": Actor.OperatingSystem.WINDOWS}
        form = ActorForm({**current, **attrs}, instance=instance)
        if not form.is_valid():
            raise serializers.ValidationError(
                {field: [str(e) for e in errors] for field, errors in form.errors.items()}
            )
        self._form = form
        return attrs

    # Saved by the form too, which forgets the machine IDs learnt for an actor whose names changed.
    def create(self, validated_data):
        return self._form.save()

    def update(self, instance, validated_data):
        return self._form.save()


class AlertSerializer(serializers.ModelSerializer):
    mitre_techniques = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Alert
        fields = ["id", "actor", "tenant_id", "alert_id", "title", "severity", "status", "category",
                  "detection_source", "created", "first_event", "last_event", "last_update", "resolved",
                  "machine_name", "device_id", "mitre_techniques", "incident_id", "portal_url"]  # fmt: skip


class MatchedAlertSerializer(serializers.ModelSerializer):
    alert = serializers.IntegerField(source="alert_id")
    alert_id = serializers.CharField(source="alert.alert_id")
    title = serializers.CharField(source="alert.title")
    rules = serializers.ListField(child=serializers.ChoiceField(choices=ProcedureMatch.Rule.choices))

    class Meta:
        model = ProcedureMatch
        fields = ["alert", "alert_id", "title", "rules", "reason", "prevented"]


class ProcedureSerializer(serializers.ModelSerializer):
    technique = serializers.CharField(source="technique_id")
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    overridden = serializers.BooleanField()
    matched_alerts = MatchedAlertSerializer(source="matches", many=True)

    class Meta:
        model = Procedure
        fields = ["id", "order", "technique", "name", "procedure_id", "executor", "command", "started_at",
                  "stopped_at", "window_closes_at", "outcome", "evaluated_outcome", "overridden", "override_reason",
                  "outcome_note", "matched_alerts"]  # fmt: skip


class OutcomeCountsField(serializers.DictField):
    child = serializers.IntegerField()


class ExecutionSerializer(serializers.ModelSerializer):
    execution_id = serializers.CharField(source="external_id")
    procedures = ProcedureSerializer(many=True)

    class Meta:
        model = Execution
        fields = ["id", "execution_id", "source", "execution_source", "actor", "target_host", "target_ip",
                  "target_user", "detection_window_minutes", "imported_at", "evaluated_at", "procedures"]  # fmt: skip


class ExecutionSummarySerializer(serializers.ModelSerializer):
    execution_id = serializers.CharField(source="external_id")
    outcomes = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = ["id", "execution_id", "source", "actor", "imported_at", "evaluated_at", "outcomes"]

    def get_outcomes(self, execution) -> dict[str, int]:
        return {o.value: getattr(execution, f"n_{o.value}", 0) for o in Outcome}


class ProcedureInSerializer(serializers.Serializer):
    technique_id = serializers.CharField(max_length=16)
    name = serializers.CharField(max_length=500, required=False, allow_blank=True)
    command = serializers.CharField(required=False, allow_blank=True)
    started_at = serializers.DateTimeField()
    stopped_at = serializers.DateTimeField()
    procedure_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    executor = serializers.CharField(max_length=100, required=False, allow_blank=True)
    output = serializers.CharField(required=False, allow_blank=True)
    order = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)


class ProceduresInSerializer(serializers.Serializer):
    """An execution as a JSON list of procedures (the other body the create endpoint takes is an ATTiRe log)."""

    actor = serializers.PrimaryKeyRelatedField(queryset=Actor.objects.all())
    execution_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    detection_window_minutes = serializers.IntegerField(min_value=1, max_value=7 * 24 * 60, required=False)
    procedures = ProcedureInSerializer(many=True, allow_empty=False, max_length=2000)  # type: ignore[call-arg]


class AttireOptionsSerializer(serializers.Serializer):
    """The query parameters of an ATTiRe import (the body is the log itself, as the logger wrote it)."""

    detection_window_minutes = serializers.IntegerField(
        min_value=1, max_value=7 * 24 * 60, required=False, help_text="Default: each integration's"
    )
    create_actors = serializers.BooleanField(
        default=False, help_text="Create the actor when no actor is the log's target host (needs add_actor)"
    )


class RejectedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    field = serializers.CharField(allow_blank=True, required=False, help_text="Which field is wrong")
    procedure = serializers.CharField(allow_blank=True, required=False, help_text="Which procedure it is of")
