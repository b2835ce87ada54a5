"""Judging one step of a capacity search: the user's criteria measured on the step's
steady part, whether the rate asked for was reached, and whether what broke was the
server or this machine (the engine short of CPU, sessions started late with slots
free, or the cap on sessions in flight)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.report.thresholds import ThresholdResult, evaluate
from smtpbench.thresholds import START_LAG_ROW, Metric, Threshold, parse_threshold
from smtpbench.units import format_duration

# What a search holds each step to when the user names no criterion of their own.
DEFAULT_CRITERIA = ("p99(DATA end) < 500ms", "rate(4xx) < 1%", "rate(errors) < 1%", "dropped == 0")
# The engine's CPU over wall time from which it counts as saturated (one process).
CPU_SATURATED = 0.90
# Share of wall time waiting for a CPU from which the machine counts as too busy.
CPU_CONTENDED = 0.20
# Start lag (p99) from which sessions count as started late, when slots were free.
LATE_START = 0.050
# Server latency counts as flat while its p50 stays within this factor of the first step's.
FLAT_FACTOR = 2.0
# Where the server's own latency is read, first present first.
SERVER_STEPS = (Step.DATA_END, Step.BDAT, Step.RCPT, Step.MAIL, Step.EHLO, Step.BANNER)


def default_criteria() -> tuple[Threshold, ...]:
    return tuple(parse_threshold(text) for text in DEFAULT_CRITERIA)


def reach_criteria(rate: float, reach: float, messages: float = 0.0) -> tuple[Threshold, ...]:
    """The step's own criteria: sessions started per second of its steady part, at least
    ``reach`` of the rate asked for; and, when sessions send ``messages`` each (on
    average), messages accepted per second at least ``reach`` of what that makes: a
    server that takes sessions but lets messages queue does not sustain the rate."""
    sessions = Threshold(
        Metric("throughput", subject="sessions"),
        ">=",
        rate * reach,
        text=f"sessions started >= {reach:.0%} of {rate:g}/s",
    )
    if messages <= 0:
        return (sessions,)
    offered = rate * messages
    accepted = Threshold(
        Metric("throughput", subject="messages"),
        ">=",
        offered * reach,
        text=f"messages accepted >= {reach:.0%} of {offered:g}/s",
    )
    return sessions, accepted


@dataclass(frozen=True, slots=True)
class Machine:
    """What this machine did during a step's steady part."""

    cpu_share: float | None  # engine process CPU time over wall time; None: not known
    cap: int  # sessions allowed in flight
    peak_in_flight: int  # most sessions in flight at a second's end
    # Share of wall time the engine was ready to run but had no CPU (other work on the
    # machine's cores); None: not known.
    cpu_wait: float | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    index: int  # from 1
    rate: float  # sessions/s asked for
    began: float  # seconds from the run's start
    window: tuple[float, float]  # the steady part judged, seconds from the run's start
    achieved: float  # sessions started per second of the steady part
    messages: float  # messages accepted per second
    p50: dict[str, float]  # command (or measure) label -> seconds
    p99: dict[str, float]
    start_lag_p99: float | None
    server_p50: float | None  # the server's latency: p50 of SERVER_STEPS' first present
    results: tuple[ThresholdResult, ...]
    machine: Machine
    tool_signs: tuple[str, ...] = ()  # why this machine, not the server, may be the limit
    cut_short: bool = False  # a count criterion broke before the step's end
    notes: tuple[str, ...] = field(default=())

    @property
    def held(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def broken_by(self) -> tuple[ThresholdResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def tool_limited(self) -> bool:
        return bool(self.tool_signs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.index,
            "rate": self.rate,
            "began": round(self.began, 3),
            "window": [round(self.window[0], 3), round(self.window[1], 3)],
            "achieved": round(self.achieved, 3),
            "messages_per_second": round(self.messages, 3),
            "held": self.held,
            "broken_by": [str(r.threshold) for r in self.broken_by],
            "criteria": [r.as_dict() for r in self.results],
            "p50": {k: _finite(v) for k, v in self.p50.items()},
            "p99": {k: _finite(v) for k, v in self.p99.items()},
            "start_lag_p99": _finite(self.start_lag_p99),
            "server_p50": _finite(self.server_p50),
            "engine_cpu": _finite(self.machine.cpu_share),
            "engine_cpu_wait": _finite(self.machine.cpu_wait),
            "cap": self.machine.cap,
            "peak_in_flight": self.machine.peak_in_flight,
            "tool_signs": list(self.tool_signs),
            "notes": list(self.notes),
            "cut_short": self.cut_short,
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _percentiles(window: Snapshot, q: float) -> dict[str, float]:
    values = window.percentiles((q,))[:, 0]
    out = {}
    for step in window.steps_seen():
        if window.latency_count(step) and math.isfinite(values[step]):
            out[step.label] = float(values[step])
    return out


def server_latency(window: Snapshot) -> float | None:
    """The p50 service time of the first of ``SERVER_STEPS`` that was timed."""
    for step in SERVER_STEPS:
        if window.latency_count(step):
            value = window.histogram(step).percentile(50)
            if math.isfinite(value):
                return value
    return None


def peak_in_flight(final_or_live: Snapshot, start: float, end: float) -> int:
    """The most sessions in flight at the end of any second between ``start`` and ``end``,
    and at ``end`` itself."""
    series = final_or_live.series
    rows = (series.time > start) & (series.time <= end + 1e-9)
    column = series.column("in_flight")[rows]
    peak = int(column.max()) if column.size else 0
    return max(peak, final_or_live.counters.in_flight)


def judge(
    index: int,
    rate: float,
    began: float,
    window: Snapshot,
    window_start: float,
    criteria: Sequence[Threshold],
    reach: float,
    machine: Machine,
    first: StepResult | None,
    *,
    cut_short: bool = False,
    messages_per_session: float = 0.0,
) -> StepResult:
    """One step's figures and verdict from its steady part (``window``, see
    ``window.between``); ``first`` is the search's first step, the reference for flat."""
    checks = (*criteria, *reach_criteria(rate, reach, messages_per_session))
    results = tuple(evaluate(checks, window))
    elapsed = window.elapsed
    achieved = window.counters.started / elapsed if elapsed > 0 else 0.0
    messages = window.counters.messages_accepted / elapsed if elapsed > 0 else 0.0
    lag = None
    if window.latency_count(START_LAG_ROW):
        lag = window.histogram(START_LAG_ROW).percentile(99)
    server = server_latency(window)
    p50 = _percentiles(window, 50.0)
    signs, notes = tool_signs(rate, reach, achieved, lag, p50, machine, first)
    return StepResult(
        index=index,
        rate=rate,
        began=began,
        window=(window_start, window_start + elapsed),
        achieved=achieved,
        messages=messages,
        p50=p50,
        p99=_percentiles(window, 99.0),
        start_lag_p99=lag,
        server_p50=server,
        results=results,
        machine=machine,
        tool_signs=signs,
        cut_short=cut_short,
        notes=notes,
    )


def _slowest(p50: dict[str, float], first: StepResult | None) -> tuple[str, float, float] | None:
    """The server's command that slowed down most since the first step: (label, p50 now,
    p50 then); None when nothing can be compared."""
    if first is None:
        return None
    worst = None
    for step in SERVER_STEPS:
        label = step.label
        if label in p50 and label in first.p50:
            ratio = (p50[label] + 0.001) / (first.p50[label] + 0.001)
            if worst is None or ratio > worst[0]:
                worst = (ratio, label, p50[label], first.p50[label])
    return None if worst is None else worst[1:]


def _flat(slowest: tuple[str, float, float] | None) -> bool:
    """Whether the server answered every command about as fast as at the first step."""
    if slowest is None:
        return False
    _, now, then = slowest
    return now <= FLAT_FACTOR * then + 0.001


def tool_signs(
    rate: float,
    reach: float,
    achieved: float,
    lag: float | None,
    p50: dict[str, float],
    machine: Machine,
    first: StepResult | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Each reason to think this machine, not the server, held the step back, and notes
    that are no such reason alone.

    The engine falling behind is the evidence: sessions started late while slots were
    free, or fewer started than asked while the server answered as fast as at first; or
    its CPU saturated. Waiting for a CPU (other work on the cores) explains the first
    two, and is only a note without them: the engine may still have kept up."""
    signs = []
    if machine.cpu_share is not None and machine.cpu_share >= CPU_SATURATED:
        signs.append(f"the engine's CPU was saturated ({machine.cpu_share:.0%} of one core)")
    slots_free = machine.peak_in_flight < machine.cap
    behind = False
    if lag is not None and lag >= LATE_START and slots_free:
        behind = True
        signs.append(
            f"sessions started late with slots free (start lag p99 {format_duration(lag)}, "
            f"at most {machine.peak_in_flight:,} of {machine.cap:,} in flight)"
        )
    short = achieved < reach * rate
    slowest = _slowest(p50, first)
    if short and slowest is not None and _flat(slowest):
        label, now, then = slowest
        behind = True
        where = (
            "with slots free"
            if slots_free
            else f"with every slot taken (the cap of {machine.cap:,} sessions in flight)"
        )
        signs.append(
            f"{achieved:,.1f} of {rate:g} sessions/s started {where} while the server "
            f"answered as fast as at first (its most slowed command, {label}: p50 "
            f"{format_duration(now)} against {format_duration(then)})"
        )
    notes = []
    if machine.cpu_wait is not None and machine.cpu_wait >= CPU_CONTENDED:
        waited = (
            f"the engine waited for a CPU {machine.cpu_wait:.0%} of the time (the "
            "machine's cores were busy with other work)"
        )
        if behind or signs:
            signs.append(waited)
        else:
            notes.append(waited + ", yet never fell behind with slots free")
    return tuple(signs), tuple(notes)


def series_p99(window_steps: Sequence[StepResult], label: str) -> np.ndarray:
    """One command's p99 per step (NaN where it was not timed): for the plot."""
    return np.array([s.p99.get(label, np.nan) for s in window_steps], dtype=np.float64)


STEP_LABELS = tuple(Step(i).label for i in range(STEP_COUNT))
