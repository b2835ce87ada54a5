"""The snapshots of one run's worker processes, merged as they arrive.

Each worker sends, with every snapshot, the one-second intervals it closed
since its last one: their end and their own sparse latency and reply counts.
Counters, histograms, reply codes (enhanced ones too), errors and failures
add up from the workers' latest snapshots (``merge_snapshots``). The per-second p50 and p99 do
not add up, so they are computed here from the added interval counts: second i
is merged once every worker still running has sent its second i (the workers
share one start time, so their seconds line up by index), and never again.
Memory stays bounded: only seconds some worker has not sent yet wait here, and
the merged seconds are kept as one run would keep them (``IntervalsBuilder``,
paired after its budget), so the final snapshot is the one a single process
recording every sample would have made, however long the run.

The live series shows the seconds merged so far; its last second can lag the
workers' latest counters by one publishing interval.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence

import numpy as np

from smtpbench.metrics.histogram import BUCKETS, FloatArray, percentiles_of
from smtpbench.metrics.intervals import ENTRY_BUDGET, IntervalDelta, IntervalsBuilder
from smtpbench.metrics.kinds import LATENCY_ROWS, MAX_REPLY_CODE
from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.series import Series
from smtpbench.metrics.snapshot import RunInfo, RunState, Snapshot
from smtpbench.protocol.steps import STEP_COUNT

_ENDED = (RunState.DONE, RunState.INTERRUPTED)
_LIVE_ORDER = (RunState.RUNNING, RunState.PAUSED, RunState.DRAINING, RunState.STARTING)


class _Rows:
    """Rows of per-second percentiles, in arrays that grow by doubling."""

    def __init__(self, capacity: int = 64) -> None:
        self._n = 0
        self._p50 = np.zeros((capacity, LATENCY_ROWS))
        self._p99 = np.zeros((capacity, LATENCY_ROWS))

    def __len__(self) -> int:
        return self._n

    def append(self, p50: FloatArray, p99: FloatArray) -> None:
        if self._n == len(self._p50):
            self._p50 = np.concatenate((self._p50, np.zeros_like(self._p50)))
            self._p99 = np.concatenate((self._p99, np.zeros_like(self._p99)))
        self._p50[self._n] = p50
        self._p99[self._n] = p99
        self._n += 1

    def first(self, n: int) -> tuple[FloatArray, FloatArray]:
        """The first ``n`` rows; NaN past the rows merged so far."""
        p50 = np.full((n, LATENCY_ROWS), np.nan)
        p99 = np.full((n, LATENCY_ROWS), np.nan)
        have = min(n, self._n)
        p50[:have] = self._p50[:have]
        p99[:have] = self._p99[:have]
        return p50, p99


class WorkerMerge:
    """Fed by the workers' messages (from any thread, one at a time: the caller locks),
    read as one run."""

    def __init__(self, info: RunInfo, workers: int, budget: int = ENTRY_BUDGET) -> None:
        self.info = info
        self.workers = workers
        self._latest: list[Snapshot | None] = [None] * workers
        self._final = [False] * workers  # its final snapshot came
        self._ended = [False] * workers  # it sends no more: final, or lost
        self._pending: list[deque[IntervalDelta]] = [deque() for _ in range(workers)]
        self._rows = _Rows()
        self._intervals = IntervalsBuilder(budget)
        self._live: Snapshot | None = None

    # -- fed ----------------------------------------------------------------

    def add(
        self, worker: int, snapshot: Snapshot, fresh: Sequence[IntervalDelta], *, final: bool
    ) -> None:
        """A worker's snapshot and the intervals it closed since its last one."""
        self._latest[worker] = snapshot
        self._pending[worker].extend(fresh)
        if final:
            self._final[worker] = self._ended[worker] = True
        self._advance()
        self._live = None

    def lost(self, worker: int) -> None:
        """The worker ended without a final snapshot: what it sent last is kept."""
        self._ended[worker] = True
        self._advance()
        self._live = None

    @property
    def merged_seconds(self) -> int:
        return len(self._rows)

    def _advance(self) -> None:
        pending, ended = self._pending, self._ended
        while any(pending) and all(p or e for p, e in zip(pending, ended, strict=True)):
            self._merge_second([p.popleft() for p in pending if p])

    def _merge_second(self, parts: list[IntervalDelta]) -> None:
        latency = np.zeros(LATENCY_ROWS * BUCKETS, dtype=np.int64)
        replies = np.zeros(STEP_COUNT * MAX_REPLY_CODE, dtype=np.int64)
        for _, (l_index, l_counts), (r_index, r_counts) in parts:
            # Indexes are unique within one part, so fancy-index addition is exact.
            latency[l_index] += l_counts
            replies[r_index] += r_counts
        counts = latency.reshape(LATENCY_ROWS, BUCKETS)
        rows = LATENCY_ROWS
        # As the recorder computes them: this second's counts alone, unclipped.
        p50, p99 = percentiles_of(counts, np.zeros(rows), np.full(rows, np.inf), (50.0, 99.0)).T
        self._rows.append(p50, p99)
        self._intervals.append(max(end for end, _, _ in parts), counts, replies)

    # -- read ---------------------------------------------------------------

    @property
    def done(self) -> bool:
        return all(self._ended)

    def snapshot(self) -> Snapshot | None:
        """The run as the workers last reported it; ``None`` before any did."""
        if self._live is None:
            parts = [s for s in self._latest if s is not None]
            if not parts:
                return None
            merged = self._merge(parts)
            n = min(len(merged.series), len(self._rows))
            self._live = dataclasses.replace(
                merged, state=_live_state(parts), series=self._with_percentiles(merged.series, n)
            )
        return self._live

    def final(self) -> Snapshot | None:
        """Once every worker has ended: the whole run, with every second's counts (exact
        when every worker sent its final snapshot; marked interrupted when one did not)."""
        parts = [s for s in self._latest if s is not None]
        if not self.done or not parts:
            return None
        merged = self._merge(parts)
        state = merged.state if all(self._final) else RunState.INTERRUPTED
        return dataclasses.replace(
            merged,
            state=state,
            series=self._with_percentiles(merged.series, len(merged.series)),
            intervals=self._intervals.freeze(),
        )

    def _merge(self, parts: list[Snapshot]) -> Snapshot:
        # The workers' own interval arrays are not needed: the seconds merged here are.
        merged = merge_snapshots([dataclasses.replace(s, intervals=None) for s in parts])
        return dataclasses.replace(merged, info=self.info)

    def _with_percentiles(self, series: Series, n: int) -> Series:
        p50, p99 = self._rows.first(n)
        return Series(
            series.time[:n],
            series.counters[:n],
            series.target_rate[:n],
            p50,
            p99,
            series.count[:n],
        )


def _live_state(parts: list[Snapshot]) -> RunState:
    states = {s.state for s in parts}
    running = states.difference(_ENDED)
    if not running:
        return RunState.INTERRUPTED if RunState.INTERRUPTED in states else RunState.DONE
    return next(state for state in _LIVE_ORDER if state in running)
