"""How a run is stopped, the same under the dashboard and headless.

``Stopper``: the first request (q, Ctrl-C, SIGTERM, a closed terminal, a failed
threshold, an unreachable target) stops scheduling and gives sessions in flight
the grace period; a second one cuts them short.

``RunWatch``: what stops a run by itself, judged on each new snapshot: a
threshold that failed for good (``abort_on_fail``), or a target where a few
connects failed and none succeeded (unless told to keep going).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.reachability import KEEP_GOING_HINT, unreachable
from smtpbench.report.thresholds import ThresholdGuard, ThresholdResult
from smtpbench.thresholds import ThresholdSettings
from smtpbench.units import format_clock

GRACEFUL = "stopping: sessions in flight get the grace period"
CUT_SHORT = "cutting sessions in flight short"


class Stoppable(Protocol):
    """An engine handle, or the ``RunControl`` of an engine in this loop."""

    def interrupt(self) -> None: ...
    def abort(self) -> None: ...


class Stopper:
    """Stops an engine once gracefully, then, asked again, at once."""

    def __init__(self, engine: Stoppable) -> None:
        self.engine = engine
        self.requested = False

    @property
    def stop_requested(self) -> bool:
        return self.requested

    def stop(self) -> str:
        """Stops the run; what was done, in a few words."""
        if not self.requested:
            self.requested = True
            self.engine.interrupt()
            return GRACEFUL
        self.engine.abort()
        return CUT_SHORT

    def interrupt(self) -> None:
        """The graceful stop, whether or not one was asked before (a watcher's)."""
        self.requested = True
        self.engine.interrupt()

    def abort(self) -> None:
        self.requested = True
        self.engine.abort()


@dataclass(frozen=True, slots=True)
class StopReason:
    """Why a run stopped itself: the sentence to show, and the threshold if one failed."""

    text: str
    threshold: ThresholdResult | None = None


class RunWatch:
    """Decides, snapshot after snapshot, whether the run should stop by itself."""

    def __init__(self, settings: ThresholdSettings, keep_going: bool = False) -> None:
        self.guard = ThresholdGuard(settings)
        self.keep_going = keep_going
        self._target_answered = False

    @property
    def aborted_by(self) -> ThresholdResult | None:
        return self.guard.aborted_by

    @property
    def watching_target(self) -> bool:
        """Still waiting to see whether anything answers at the target."""
        return not (self.keep_going or self._target_answered)

    @property
    def active(self) -> bool:
        """Whether a snapshot can still make it stop the run."""
        return self.watching_target or (self.guard.active and self.guard.aborted_by is None)

    def check(self, snapshot: Snapshot) -> StopReason | None:
        """Why the run should stop now, or None. Give it every new snapshot of a run
        still going; it says a reason once."""
        if snapshot.state in (RunState.DONE, RunState.INTERRUPTED):
            return None
        if self.guard.active:
            failed = self.guard.check(snapshot)
            if failed is not None:
                return StopReason(
                    f"threshold failed: {failed.threshold} (measured {failed.measured_text} "
                    f"at {format_clock(snapshot.elapsed)}; the thresholds table measures "
                    "the whole run); stopping the run",
                    failed,
                )
        if self.keep_going or self._target_answered:
            return None
        if snapshot.latency_count(Step.CONNECT):
            self._target_answered = True  # something answered: the rest is the run's to measure
            return None
        reason = unreachable(snapshot)
        if reason is not None:
            self._target_answered = True  # said once
            return StopReason(f"{reason}; stopping the run ({KEEP_GOING_HINT})")
        return None
