"""Thresholds judged on a snapshot: a pure function the end-of-run summary, the live
check that may stop a run, ``report`` and the dashboard all call, and their tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpbench.files import write_atomically
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.report.measure import measure
from smtpbench.thresholds import Threshold, ThresholdSettings, format_value

if TYPE_CHECKING:
    from smtpbench.transit.matching import TransitFigures


class Verdict(Enum):
    PASSED = "passed"
    FAILED = "failed"  # measured, and outside the limit
    NO_DATA = "no data"  # nothing to measure: fails unless the threshold is optional


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    threshold: Threshold
    measured: float | None  # None: no data

    @property
    def verdict(self) -> Verdict:
        if self.measured is None:
            return Verdict.NO_DATA
        return Verdict.PASSED if self.threshold.passes(self.measured) else Verdict.FAILED

    @property
    def passed(self) -> bool:
        verdict = self.verdict
        return verdict is Verdict.PASSED or (verdict is Verdict.NO_DATA and self.threshold.optional)

    @property
    def measured_text(self) -> str:
        return format_value(self.threshold.metric.kind, self.measured)

    @property
    def outcome_text(self) -> str:
        """``pass``, ``FAIL``, ``FAIL (no data)`` or ``pass (no data, optional)``."""
        if self.verdict is Verdict.NO_DATA:
            return "pass (no data, optional)" if self.passed else "FAIL (no data)"
        return "pass" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": str(self.threshold),
            "metric": str(self.threshold.metric),
            "operator": self.threshold.op,
            "limit": self.threshold.value,
            "measured": self.measured,
            "optional": self.threshold.optional,
            "verdict": self.verdict.value,
            "passed": self.passed,
        }


def evaluate(
    thresholds: Sequence[Threshold], snapshot: Snapshot, transit: TransitFigures | None = None
) -> list[ThresholdResult]:
    """Every threshold measured on the snapshot, in the order given; those on transit on
    ``transit`` (no data without it: during a run, and for a run without ``--through``)."""
    return [ThresholdResult(t, measure(t.metric, snapshot, transit)) for t in thresholds]


def all_passed(results: Sequence[ThresholdResult]) -> bool:
    return all(result.passed for result in results)


def failing_now(results: Sequence[ThresholdResult]) -> list[ThresholdResult]:
    """Thresholds that fail on data seen so far and cannot recover by the end (see
    ``Threshold.final_when_failing``): what stops a run with abort-on-fail. Missing
    data is never a reason to stop: it may still come."""
    return [r for r in results if r.verdict is Verdict.FAILED and r.threshold.final_when_failing]


def _style(result: ThresholdResult) -> str:
    if result.passed:
        return "dim green" if result.verdict is Verdict.NO_DATA else "green"
    return "bold red"


def thresholds_table(results: Sequence[ThresholdResult]) -> RenderableType:
    failed = sum(not r.passed for r in results)
    title = (
        f"Thresholds: {failed} of {len(results)} failed"
        if failed
        else f"Thresholds: all {len(results)} passed"
    )
    table = Table(title=title, title_justify="left", title_style="bold red" if failed else "bold")
    table.add_column("threshold")
    table.add_column("measured", justify="right")
    table.add_column("result")
    table.add_column("what it measures", style="dim")
    for result in results:
        table.add_row(
            str(result.threshold),
            result.measured_text,
            Text(result.outcome_text, style=_style(result)),
            result.threshold.metric.meaning,
        )
    return table


def thresholds_line(results: Sequence[ThresholdResult]) -> str:
    """For live lines: ``thresholds 2 passing, 1 without data, 1 failing: p99(DATA) < 5ms
    (7.10ms)``."""
    failing = [r for r in results if r.verdict is Verdict.FAILED]
    waiting = sum(r.verdict is Verdict.NO_DATA for r in results)
    text = f"thresholds {len(results) - len(failing) - waiting} passing"
    if waiting:
        text += f", {waiting} without data"
    if failing:
        text += f", {len(failing)} failing: " + ", ".join(
            f"{r.threshold} ({r.measured_text})" for r in failing[:3]
        )
    return text


def live_thresholds(results: Sequence[ThresholdResult]) -> RenderableType:
    """A compact block under the live panel."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column(justify="right")
    grid.add_column()
    for result in results:
        verdict = result.verdict
        if verdict is Verdict.NO_DATA:
            state = Text("waiting for data", style="dim")
        elif result.passed:
            state = Text("passing", style="green")
        else:
            state = Text("failing", style="bold red")
        grid.add_row(str(result.threshold), result.measured_text, state)
    return Group(Text("thresholds", style="bold dim"), grid)


THRESHOLDS_FILE = "thresholds.json"


def write_threshold_results(
    folder: Path, results: Sequence[ThresholdResult], aborted_by: ThresholdResult | None = None
) -> None:
    """``thresholds.json`` in a results folder: each threshold, its measured value and
    verdict, whether all passed, and the one that stopped the run early, if any."""
    data = {
        "passed": all_passed(results),
        "aborted_by": str(aborted_by.threshold) if aborted_by is not None else None,
        "thresholds": [result.as_dict() for result in results],
    }
    text = json.dumps(data, indent=2, allow_nan=False)
    write_atomically(folder / THRESHOLDS_FILE, text + "\n")


class ThresholdGuard:
    """Abort-on-fail: given snapshots as the run goes, says once when a threshold has
    failed for good (``failing_now``) after the grace period. Pure; the headless loop
    and the dashboard each feed it and stop the run themselves."""

    def __init__(self, settings: ThresholdSettings) -> None:
        self.settings = settings
        self.aborted_by: ThresholdResult | None = None

    @property
    def active(self) -> bool:
        return bool(self.settings.abort_on_fail and self.settings.checks)

    def check(self, snapshot: Snapshot) -> ThresholdResult | None:
        if not self.active or self.aborted_by is not None:
            return None
        if snapshot.elapsed < self.settings.abort_grace:
            return None
        failing = failing_now(evaluate(self.settings.checks, snapshot))
        if failing:
            self.aborted_by = failing[0]
        return self.aborted_by
