"""The hot-path side of metrics: the engine appends plain numbers, a periodic flush
turns them into histogram and reply-code counts with vectorised numpy.

Nothing here awaits or reads a clock: the engine passes times in, so the
recorder works the same under a real or a mock clock.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from smtpbench.metrics.client_groups import ClientGroups
from smtpbench.metrics.events import SessionEvents, SessionFailure
from smtpbench.metrics.histogram import HistogramSet, IntArray, percentiles_of
from smtpbench.metrics.intervals import IntervalDelta, IntervalsBuilder
from smtpbench.metrics.kinds import (
    ERROR_CLASSES,
    LATENCY_ROWS,
    MAX_REPLY_CODE,
    MESSAGE_LATENCY,
    SESSION_LATENCY,
    START_LAG,
    ErrorClass,
)
from smtpbench.metrics.series import SERIES_COUNTERS, SeriesBuilder
from smtpbench.metrics.snapshot import (
    SUMMARY_PERCENTILES,
    Counters,
    FailureRecord,
    RunInfo,
    RunState,
    Snapshot,
    enhanced_counts,
)
from smtpbench.protocol.steps import STEP_COUNT

RECENT_FAILURES = 50
COUNTER_NAMES = tuple(field.name for field in dataclasses.fields(Counters))
_IN_FLIGHT = SERIES_COUNTERS.index("in_flight")
_FINAL = (RunState.DONE, RunState.INTERRUPTED)


class Recorder(SessionEvents):
    """Collects one run's metrics. Single-threaded: the engine's trio loop owns it.

    Sessions report through ``SessionEvents`` (``events.py``); the run itself sets
    ``state``, ``target_rate`` and the scheduling counters (scheduled, dropped,
    waiting)."""

    def __init__(self, info: RunInfo, *, live_intervals: bool = False) -> None:
        """``live_intervals``: keep each closed interval's counts for ``take_intervals``
        (a worker process sends them to its parent with every snapshot)."""
        self.info = info
        self.state = RunState.STARTING
        self.target_rate: float | None = None
        self.clock_start = 0.0  # the engine's clock reading at the start, for failure times
        # Counters the engine bumps directly (plain ints are the cheapest thing to add to).
        self.scheduled = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.in_flight = 0
        self.waiting = 0
        self.messages_accepted = 0
        self.messages_rejected = 0
        self.messages_aborted = 0
        self.messages_deferred = 0
        self.messages_first_attempt = 0
        self.messages_expired = 0
        self.messages_queued = 0
        self.sessions_retried = 0
        # Figures per client, when sessions come from several addresses (set by the run).
        self.clients: ClientGroups | None = None
        self.recipients_accepted = 0
        self.recipients_rejected = 0
        self.bytes_sent = 0
        # Flat buffers, emptied by flush().
        self._latency_rows: list[int] = []
        self._latency_values: list[float] = []
        self._replies: list[int] = []
        self._errors: list[int] = []
        # Aggregates.
        self._latency = HistogramSet(LATENCY_ROWS)
        self._reply_counts = np.zeros(STEP_COUNT * MAX_REPLY_CODE, dtype=np.int64)
        self._error_counts = np.zeros(ERROR_CLASSES * STEP_COUNT, dtype=np.int64)
        self._interval_counts = np.zeros_like(self._latency.counts)
        # The latency buckets ever used, as a mask and as sorted flat indices, so that
        # packing a snapshot need not search the whole array for them.
        self._seen = np.zeros(self._latency.counts.size, dtype=bool)
        self._used: IntArray = np.zeros(0, dtype=np.int64)
        self._interval_replies = np.zeros_like(self._reply_counts)
        self._intervals = IntervalsBuilder(keep_fresh=live_intervals)
        self._series = SeriesBuilder(LATENCY_ROWS)
        self._series_last = [0] * len(SERIES_COUNTERS)
        self._failures: deque[FailureRecord] = deque(maxlen=RECENT_FAILURES)
        # Enhanced status codes (RFC 3463) per step, as the server gave them: a few
        # distinct ones per run, so counted by name rather than in an array.
        # Kept per step (a dict each), so counting one needs no tuple for its key.
        self._enhanced_by_step: list[dict[str, int]] = [{} for _ in range(STEP_COUNT)]
        # Replays: per step, replies compared with the recording, and codes that differed.
        self._compared = [0] * STEP_COUNT
        self._differed = [0] * STEP_COUNT

    # -- hot path: SessionEvents -----------------------------------------

    def session_started(self, lag: float) -> None:
        self._latency_rows.append(START_LAG)
        self._latency_values.append(lag)
        self.started += 1
        self.in_flight += 1

    def sent(self, size: int) -> None:
        self.bytes_sent += size

    def timed(self, step: int, seconds: float) -> None:
        self._latency_rows.append(step)
        self._latency_values.append(seconds)

    def reply(
        self, step: int, code: int, seconds: float | None = None, enhanced: str | None = None
    ) -> None:
        """``seconds`` None: a code with no service time (stand-ins that make up figures)."""
        if seconds is not None:
            self._latency_rows.append(step)
            self._latency_values.append(seconds)
        if 0 <= code < MAX_REPLY_CODE:
            self._replies.append(step * MAX_REPLY_CODE + code)
        if enhanced is not None:
            counts = self._enhanced_by_step[step]
            counts[enhanced] = counts.get(enhanced, 0) + 1

    def recipient(self, accepted: bool) -> None:
        if accepted:
            self.recipients_accepted += 1
        else:
            self.recipients_rejected += 1

    def message(self, accepted: bool, latency: float | None) -> None:
        if latency is not None:
            self._latency_rows.append(MESSAGE_LATENCY)
            self._latency_values.append(latency)
        if accepted:
            self.messages_accepted += 1
        else:
            self.messages_rejected += 1

    def error(self, error: ErrorClass, step: int) -> None:
        self._errors.append(error * STEP_COUNT + step)

    # Rows and failures as they are, for stand-ins that make up a run's figures.

    def latency(self, row: int, seconds: float) -> None:
        self._latency_rows.append(row)
        self._latency_values.append(seconds)

    def failure(self, record: FailureRecord) -> None:
        self._failures.append(record)

    def diverged(self, step: int, differs: bool) -> None:
        """A reply compared with the recorded one at ``step`` (replays only)."""
        self._compared[step] += 1
        if differs:
            self._differed[step] += 1

    def session_ended(
        self,
        number: int,
        end: float,
        latency: float,
        aborted: int,
        failure: SessionFailure | None,
    ) -> None:
        self._latency_rows.append(SESSION_LATENCY)
        self._latency_values.append(latency)
        self.in_flight -= 1
        self.completed += 1
        self.messages_aborted += aborted
        if failure is None:
            return
        self.failed += 1
        self._failures.append(
            FailureRecord(
                time=end - self.clock_start,
                session=number,
                step=failure.step.label,
                error=failure.error.label,
                detail=failure.detail,
                transcript=failure.transcript,
            )
        )

    # -- periodic ---------------------------------------------------------

    def flush(self, now: float, *, series: bool = True) -> None:
        """Aggregates the buffers; with ``series`` closes the interval ending at ``now``
        (seconds since start) as one row of the time series."""
        if self._latency_rows:
            rows = np.array(self._latency_rows, dtype=np.int64)
            values = np.array(self._latency_values, dtype=np.float64)
            self._latency_rows = []
            self._latency_values = []
            index, batch = self._latency.add_samples(rows, values)
            self._interval_counts.ravel()[index] += batch
            fresh = index[~self._seen[index]]
            if fresh.size:  # buckets never used before: rare once a run has settled
                self._seen[fresh] = True
                self._used = np.sort(np.concatenate((self._used, fresh)))
        if self._replies:
            batch = np.bincount(self._replies, minlength=self._reply_counts.size)
            self._reply_counts += batch
            self._interval_replies += batch
            self._replies = []
        if self._errors:
            self._error_counts += np.bincount(self._errors, minlength=self._error_counts.size)
            self._errors = []
        if series:
            self._close_interval(now)

    def _close_interval(self, now: float) -> None:
        # Percentiles of this interval alone, from the counts flushed since the last close.
        rows = LATENCY_ROWS
        counts = self._interval_counts
        p50, p99 = percentiles_of(counts, np.zeros(rows), np.full(rows, np.inf), (50.0, 99.0)).T
        totals = [getattr(self, name) for name in SERIES_COUNTERS]
        deltas = [total - before for total, before in zip(totals, self._series_last, strict=True)]
        deltas[_IN_FLIGHT] = self.in_flight  # a level, not a count
        self._series_last = totals
        rate = self.target_rate if self.target_rate is not None else np.nan
        self._series.append(now, deltas, rate, p50, p99, counts.sum(axis=1))
        self._intervals.append(now, counts, self._interval_replies)
        counts[:] = 0
        self._interval_replies[:] = 0

    def enhanced_counts(self) -> dict[tuple[int, str], int]:
        """Replies per (step, enhanced status code) so far (a copy)."""
        return {
            (step, code): count
            for step, counts in enumerate(self._enhanced_by_step)
            for code, count in counts.items()
        }

    def take_intervals(self) -> list[IntervalDelta]:
        """The intervals closed since the last call: end, sparse latency and reply counts."""
        return self._intervals.take_fresh()

    def used_buckets(self) -> IntArray:
        """Sorted flat indices (into the latency counts, raveled) of every bucket that
        holds a sample: the only ones a snapshot needs to carry."""
        return self._used

    def snapshot(self, elapsed: float, *, live: bool = False) -> Snapshot:
        """A frozen copy of everything flushed so far (call ``flush`` first for the latest).

        ``live`` shares the recorder's own arrays instead of copying them: for a snapshot
        that is packed at once, before anything is recorded again."""
        counters = Counters(**{name: getattr(self, name) for name in COUNTER_NAMES})
        replies = self._reply_counts.reshape(STEP_COUNT, MAX_REPLY_CODE)
        errors = self._error_counts.reshape(ERROR_CLASSES, STEP_COUNT)
        return Snapshot(
            info=self.info,
            state=self.state,
            elapsed=elapsed,
            target_rate=self.target_rate,
            counters=counters,
            latency=self._latency if live else self._latency.copy(),
            replies=replies if live else replies.copy(),
            errors=errors if live else errors.copy(),
            series=self._series.view() if live else self._series.freeze(),
            failures=tuple(self._failures),
            # Per-interval histograms are for exports and merges: the final snapshot only.
            intervals=self._intervals.freeze() if self.state in _FINAL else None,
            divergence=np.array([self._compared, self._differed], dtype=np.int64)
            if self.info.mode == "replay" or any(self._compared)
            else None,
            enhanced=enhanced_counts(self.enhanced_counts()),
            clients=self.clients.rows() if self.clients is not None else (),
        )


__all__ = ["SUMMARY_PERCENTILES", "Recorder"]
