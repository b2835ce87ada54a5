"""Frozen views of a run's metrics: what the dashboard, the headless display,
the results files and the reports all read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from smtpbench.metrics.client_groups import ClientRow
from smtpbench.metrics.histogram import FloatArray, Histogram, HistogramSet, IntArray
from smtpbench.metrics.intervals import Intervals
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.series import Series
from smtpbench.protocol.steps import STEP_COUNT, Step

SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9)

# Enhanced status codes (RFC 3463) per step: (step, "4.7.1", count), sorted, each pair once.
EnhancedCounts = tuple[tuple[int, str, int], ...]


def enhanced_counts(counts: Mapping[tuple[int, str], int]) -> EnhancedCounts:
    """The frozen form of counts by (step, enhanced code); zero counts left out."""
    return tuple(sorted((step, code, n) for (step, code), n in counts.items() if n))


def add_enhanced(parts: Iterable[EnhancedCounts]) -> EnhancedCounts:
    """Several runs' or workers' enhanced counts added up."""
    total: dict[tuple[int, str], int] = {}
    for part in parts:
        for step, code, n in part:
            total[step, code] = total.get((step, code), 0) + n
    return enhanced_counts(total)


class RunState(Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    DRAINING = "draining"
    DONE = "done"
    INTERRUPTED = "interrupted"  # stopped before its planned end (q, Ctrl-C, a threshold)

    @property
    def word(self) -> str:
        """What screens and summaries call the state: a stop someone asked for is a
        normal end of its own, not an accident."""
        return "STOPPED" if self is RunState.INTERRUPTED else self.value.upper()

    @property
    def ended(self) -> bool:
        return self in (RunState.DONE, RunState.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What was run, for headers and results; nothing here changes during the run."""

    scenario: str
    target: str  # "host:port", or "embedded sink (host:port)"
    load: str  # one line, e.g. "300/s for 5m (uniform arrivals), cap 1000"
    mode: str  # "rate" or "concurrency"
    planned_duration: float | None
    planned_sessions: int | None
    seed: int
    started_at: str  # ISO 8601 wall-clock time
    version: str
    # A fresh id for each run ("a+b" for a merge of runs a and b): merge refuses a run
    # twice. Empty in results written before there were ids.
    run_id: str = ""
    delivery: str = "open"  # "mta": 4xx retried as a sending MTA does ([delivery])
    # How the engine ran: "compiled with mypyc" or "interpreted" (build_info.engine_build);
    # empty in results written before it was noted.
    engine: str = ""

    @property
    def tool(self) -> str:
        """``smtpbench 0.1.0, engine compiled with mypyc``, as headers and reports say it."""
        engine = f", engine {self.engine}" if self.engine else ""
        return f"smtpbench {self.version}{engine}"


@dataclass(frozen=True, slots=True)
class Counters:
    scheduled: int = 0  # sessions the schedule asked for so far
    started: int = 0
    completed: int = 0  # ended, whatever the outcome
    failed: int = 0  # ended with an error or an unexpected reply
    dropped: int = 0  # due but never started: the backlog was full
    in_flight: int = 0
    waiting: int = 0  # due, waiting in the backlog for a free slot
    messages_accepted: int = 0
    messages_rejected: int = 0  # a final reply other than success, or refused earlier
    messages_aborted: int = 0  # cut short by a connection error
    recipients_accepted: int = 0
    recipients_rejected: int = 0
    bytes_sent: int = 0
    # [delivery] mode = "mta": deferrals sent again later (each one counted), messages
    # taken at their first attempt, given up at their maximum age, still queued at the end.
    messages_deferred: int = 0
    messages_first_attempt: int = 0
    messages_expired: int = 0
    messages_queued: int = 0
    sessions_retried: int = 0  # sessions started for messages tried again


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    sent: str  # the command line as sent, or "(message content, N bytes)"
    reply: str  # "250 2.0.0 Ok", or "" when none came

    @classmethod
    def left_out(cls, count: int) -> TranscriptLine:
        """Where a long session's transcript leaves ``count`` lines out."""
        lines = "line" if count == 1 else "lines"
        return cls(f"({count:,} {lines} of this session left out)", "")

    @property
    def is_left_out(self) -> bool:
        """Not a command but where lines were left out: shown apart, with no reply."""
        return not self.reply and self.sent.endswith(" of this session left out)")


@dataclass(frozen=True, slots=True)
class FailureRecord:
    time: float  # seconds since start
    session: int
    step: str  # step label
    error: str  # error class label
    detail: str  # the reply or the exception text
    transcript: tuple[TranscriptLine, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    info: RunInfo
    state: RunState
    elapsed: float
    target_rate: float | None  # sessions/s asked for now; None in the closed model
    counters: Counters
    latency: HistogramSet  # rows: steps (service time), then start lag, message, session
    replies: IntArray  # (steps, 600): reply counts by step and code
    errors: IntArray  # (error classes, steps)
    series: Series
    failures: tuple[FailureRecord, ...] = ()
    intervals: Intervals | None = None  # each interval's own counts; final snapshots only
    # Replays only: (2, steps): replies compared with the recording, and codes that differed.
    divergence: IntArray | None = None
    # Replies per step and enhanced status code, for the replies that carried one.
    enhanced: EnhancedCounts = ()
    # Figures per client, when sessions came from several addresses (client_groups.py).
    clients: tuple[ClientRow, ...] = ()
    _percentiles: dict[tuple[float, ...], FloatArray] = field(
        default_factory=dict, compare=False, repr=False
    )

    def histogram(self, row: int) -> Histogram:
        return self.latency.histogram(row)

    def percentiles(self, qs: tuple[float, ...] = SUMMARY_PERCENTILES) -> FloatArray:
        """Every latency row's percentiles at once (rows, len(qs)); cached per snapshot."""
        cached = self._percentiles.get(qs)
        if cached is None:
            cached = self._percentiles[qs] = self.latency.percentiles(qs)
        return cached

    def latency_count(self, row: int) -> int:
        return int(self.latency.counts[row].sum())

    def reply_codes(self, step: Step) -> dict[int, int]:
        row = self.replies[step]
        codes = np.nonzero(row)[0]
        return {int(code): int(row[code]) for code in codes}

    def enhanced_codes(self, step: Step) -> dict[str, int]:
        """The enhanced status codes of ``step``'s replies and how many carried each."""
        return {code: n for s, code, n in self.enhanced if s == step}

    def enhanced_count(self, code: str, step: Step | None = None) -> int:
        """Replies (to ``step``, or to every command) that carried ``code``."""
        return sum(n for s, c, n in self.enhanced if c == code and (step is None or s == step))

    def errors_by_class(self) -> dict[ErrorClass, int]:
        totals = self.errors.sum(axis=1)
        return {ErrorClass(i): int(n) for i, n in enumerate(totals) if n}

    def step_errors(self, step: Step) -> int:
        """The server's errors at ``step``: what the tool cut short at a stop is not one."""
        column = self.errors[:, step]
        return int(column.sum() - column[ErrorClass.CANCELLED])

    def step_cancelled(self, step: Step) -> int:
        """Steps cut short by the tool at a stop (after the grace period, or q twice)."""
        return int(self.errors[ErrorClass.CANCELLED, step])

    @property
    def cancelled(self) -> int:
        """Sessions the tool cut short at a stop: each is cancelled at one step."""
        return int(self.errors[ErrorClass.CANCELLED].sum())

    @property
    def server_failed(self) -> int:
        """Failed sessions, less those the tool cut short at a stop."""
        return max(0, self.counters.failed - self.cancelled)

    @property
    def server_completed(self) -> int:
        """Sessions that ended on their own, whatever the outcome."""
        return max(0, self.counters.completed - self.cancelled)

    def server_failed_rate(self) -> FloatArray:
        """Failed sessions per second of each series row, less those smtpbench cancelled
        at the stop. It cancels them all at once at the end of the run, so they are taken
        from the last rows: a stop no longer shows as a burst of failures."""
        series = self.series
        failed = series.column("failed").astype(np.float64)
        left = float(self.cancelled)
        for row in range(len(failed) - 1, -1, -1):
            if left <= 0:
                break
            taken = min(left, failed[row])
            failed[row] -= taken
            left -= taken
        widths = np.diff(series.time, prepend=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(widths > 0, failed / widths, 0.0)

    @property
    def schedule_share(self) -> float | None:
        """Sessions started against sessions the schedule asked for over the time that
        ran (the integral of the rate, pauses excluded); ``None`` before any was due."""
        c = self.counters
        return c.started / c.scheduled if c.scheduled else None

    @property
    def achieved_rate(self) -> float:
        """Sessions started per second of elapsed time."""
        return self.counters.started / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.counters.messages_accepted / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def is_replay(self) -> bool:
        return self.divergence is not None

    def divergence_of(self, step: Step) -> tuple[int, int]:
        """(replies compared with the recording, codes that differed) at ``step``."""
        if self.divergence is None:
            return 0, 0
        return int(self.divergence[0, step]), int(self.divergence[1, step])

    def steps_seen(self) -> list[Step]:
        """Steps with at least one sample or error, in session order."""
        counts = self.latency.counts[:STEP_COUNT].sum(axis=1) + self.errors.sum(axis=0)
        return [Step(i) for i in range(STEP_COUNT) if counts[i]]
