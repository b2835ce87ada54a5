"""How far a run got against its plan, the same on every screen: the planned duration
stays the planned duration when someone stops the run early."""

from __future__ import annotations

from dataclasses import dataclass

from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.units import format_clock


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed: float
    total: float | None  # the run's planned length in wall time; None when it has none
    done: float  # share of the schedule covered, 0 to 1

    @property
    def clock(self) -> str:
        """``00:00:12 / 00:00:26``, or the elapsed time alone."""
        text = format_clock(self.elapsed)
        if self.total is not None:
            text += f" / {format_clock(self.total)}"
        return text


def run_progress(snapshot: Snapshot, remaining: float | None) -> Progress:
    """``remaining`` is the schedule time left as the engine says (0 once scheduling ended,
    whether at its end or at a stop; None when the run is bounded by a session count)."""
    info = snapshot.info
    elapsed = snapshot.elapsed
    planned = info.planned_duration
    if remaining is not None and remaining > 0 and not snapshot.state.ended:
        # Scheduling: pauses push the end out, so the total is what the engine says.
        total = elapsed + remaining
        return Progress(elapsed, total, min(1.0, elapsed / total) if total else 0.0)
    if snapshot.state is RunState.DONE:
        return Progress(elapsed, planned, 1.0)
    if planned:
        return Progress(elapsed, planned, min(1.0, elapsed / planned))
    sessions = info.planned_sessions
    if sessions:
        return Progress(elapsed, None, min(1.0, snapshot.counters.scheduled / sessions))
    return Progress(elapsed, None, 0.0)
