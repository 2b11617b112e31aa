"""The step runner every Test uses: named checks run in order, each timed and explained, the rest skipped after a
failure, and the verdict a list of steps adds up to."""

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from defender.services.errors import DefenderError

logger = logging.getLogger(__name__)


class StepOutcome(StrEnum):
    """What one step came to. Stored and sent over the node wire as its value."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    """What a whole Test came to: "not tested" when nothing failed but nothing decisive ran either."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_TESTED = "not tested"


PASSED, FAILED, SKIPPED = StepOutcome.PASSED, StepOutcome.FAILED, StepOutcome.SKIPPED
NOT_TESTED = Verdict.NOT_TESTED

# A check returns (outcome, message) or raises a DefenderError, whose message is what the person sees.
Check = Callable[[], tuple[StepOutcome, str]]


@dataclass(frozen=True)
class Step:
    name: str
    outcome: StepOutcome
    duration_ms: int
    message: str


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever its name says

    steps: tuple[Step, ...]

    @property
    def ok(self) -> bool:
        """Passed only when nothing failed and the last step, the one that proves the whole road (the API call, the
        proxy's tunnel), passed: a Test whose steps were all skipped tested nothing and is never green."""
        return bool(self.steps) and not self.failed_step and self.steps[-1].outcome == PASSED

    @property
    def failed_step(self) -> Step | None:
        return next((step for step in self.steps if step.outcome == FAILED), None)

    @property
    def verdict(self) -> Verdict:
        if self.ok:
            return Verdict.PASSED
        return Verdict.FAILED if self.failed_step else Verdict.NOT_TESTED

    @property
    def summary(self) -> str:
        """One line for the integration list: what failed, what to do when nothing was tested, or that all passed."""
        failed = self.failed_step
        if failed:
            return f"{failed.name} failed: {failed.message}"
        if not self.ok:
            return self.steps[-1].message if self.steps else "No step ran."
        total = sum(step.duration_ms for step in self.steps) / 1000
        return f"All steps passed in {total:.1f} s."


def run_checks(named_checks: Iterable[tuple[str, Check]], subject: str) -> Iterator[Step]:
    """Run each (name, check) in order and time it; after a failure the rest are skipped."""
    failed = False
    for name, check in named_checks:
        if failed:
            yield Step(name, SKIPPED, 0, "Not run: an earlier step failed.")
            continue
        started = time.monotonic()
        try:
            outcome, message = check()
        except DefenderError as exc:
            outcome, message = FAILED, str(exc)
        except Exception as exc:
            logger.exception("The %s step of the Test for %s broke", name, subject)
            outcome, message = FAILED, f"Unexpected error ({type(exc).__name__}); the site's log has the details."
        failed = outcome == FAILED
        yield Step(name, StepOutcome(outcome), round((time.monotonic() - started) * 1000), message)
