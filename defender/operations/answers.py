"""What a finished remote job means: the same records a local Test or Get alerts leaves."""

from defender.models import Job
from defender.operations.alerts import record_remote_alerts
from defender.operations.checks import record_remote_test


def record(job: Job) -> None:
    if job.kind == Job.Kind.TEST:
        record_remote_test(job)
    elif job.kind == Job.Kind.ALERTS:
        record_remote_alerts(job)
