"""Snapshots built by hand from raw samples, so a test can work out what a report or a
threshold should say from the samples themselves (numpy, or arithmetic), not from the
histograms under test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from smtpbench.metrics.histogram import HistogramSet
from smtpbench.metrics.kinds import ERROR_CLASSES, LATENCY_ROWS, MAX_REPLY_CODE
from smtpbench.metrics.series import SeriesBuilder
from smtpbench.metrics.snapshot import Counters, RunInfo, RunState, Snapshot
from smtpbench.protocol.steps import STEP_COUNT

INFO = RunInfo(
    scenario="by hand",
    target="127.0.0.1:2525",
    load="10/s for 10s (uniform arrivals), cap 100",
    mode="rate",
    planned_duration=10.0,
    planned_sessions=None,
    seed=1,
    started_at="2026-12-05T09:00:00+00:00",
    version="0.1.0",
)


def snapshot_of(
    samples: Mapping[int, Sequence[float] | np.ndarray],
    *,
    replies: Mapping[tuple[int, int], int] | None = None,
    counters: Counters | None = None,
    elapsed: float = 10.0,
) -> Snapshot:
    """A finished run's snapshot holding exactly these latency samples (by row), reply
    counts (by step and code) and counters."""
    latency = HistogramSet(LATENCY_ROWS)
    for row, values in samples.items():
        seconds = np.asarray(values, dtype=np.float64)
        latency.add_samples(np.full(seconds.size, row, dtype=np.int64), seconds)
    table = np.zeros((STEP_COUNT, MAX_REPLY_CODE), dtype=np.int64)
    for (step, code), count in (replies or {}).items():
        table[step, code] = count
    return Snapshot(
        info=INFO,
        state=RunState.DONE,
        elapsed=elapsed,
        target_rate=None,
        counters=counters or Counters(),
        latency=latency,
        replies=table,
        errors=np.zeros((ERROR_CLASSES, STEP_COUNT), dtype=np.int64),
        series=SeriesBuilder(LATENCY_ROWS).freeze(),
    )
