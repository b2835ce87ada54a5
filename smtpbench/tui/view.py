"""What every widget is drawn from: one snapshot plus the dashboard's own choices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smtpbench.metrics.histogram import FloatArray
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import ThresholdResult

WINDOWS = (30, 60, 120, 300, 900, 3600)  # seconds of history the charts show
RECENT = 5  # seconds the "rate/s" of a command is averaged over
SLIVER = 0.5  # a last interval shorter than this (seconds) is left off the charts
SERVICE = "service"  # the latency chart's views: service time of the command in focus,
INTENDED = "intended"  # or the message latency from intended start


def format_window(seconds: int) -> str:
    """``60 s``, ``5 min``, ``1 h``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass(frozen=True, slots=True)
class View:
    snapshot: Snapshot
    remaining: float | None
    focus: Step
    window: int
    note: str = ""  # a line for the header: where results went, what a key did
    thresholds: tuple[ThresholdResult, ...] = ()  # measured on this snapshot
    latency: str = SERVICE  # what the latency chart shows
    where: str = ""  # where the load runs when not on this machine: "cluster: ..."

    def window_slice(self) -> slice:
        """The series rows inside the chart window, without a last interval that is only a
        sliver (the run ended a fraction of a second into it): a rate over 0.04 s is noise."""
        times = self.snapshot.series.time
        start = int(np.searchsorted(times, self.snapshot.elapsed - self.window, side="left"))
        end = len(times)
        if end - start >= 2 and times[-1] - times[-2] < SLIVER:
            end -= 1
        return slice(start, end)

    def seconds_ago(self) -> FloatArray:
        """The x axis: each row's end time relative to now (negative seconds)."""
        return self.snapshot.series.time[self.window_slice()] - self.snapshot.elapsed

    def recent_rate(self, row: int) -> float:
        """Samples per second of a latency row over the last few complete seconds."""
        series = self.snapshot.series
        n = len(series)
        if n == 0:
            return 0.0
        window = min(RECENT, n)
        start = series.time[n - window - 1] if n > window else 0.0
        width = series.time[-1] - start
        return float(series.count[n - window :, row].sum() / width) if width > 0 else 0.0
