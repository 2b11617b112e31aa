"""The REST API (/api/v1/) for the tools that run attack procedures: actors, alerts, executions and coverage."""
