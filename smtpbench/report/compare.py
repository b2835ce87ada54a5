"""Runs side by side: each later run against the first (the baseline), per command and
per percentile, with the change in percent coloured for better or worse; reply-code
shares; and ``--fail-if`` regression rules such as ``p99 +10%``.

A rule is a metric, a sign and an amount. ``+`` fails when the metric went up
by more than the amount, ``-`` when it went down by more. The amount is
relative to the baseline when it ends in ``%`` (``p99 +10%``), in percentage
points for rates with ``pp`` (``rate(errors) +0.5pp``), and otherwise in the
metric's own unit (``p99(DATA) +5ms``, ``throughput -50/s``). A bare
percentile, ``mean`` or ``max`` applies to every command and measure the baseline
has data for.

A rule the baseline has data for but a later run does not (every session of it
refused, say) fails, saying so: a missing figure is not a pass. A rule that
matches nothing in any run is a mistake in the rule, not a result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpbench.metrics.kinds import LATENCY_ROWS
from smtpbench.metrics.snapshot import SUMMARY_PERCENTILES, Snapshot
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.report.measure import measure
from smtpbench.report.summary import code_style
from smtpbench.thresholds import (
    Kind,
    Metric,
    ThresholdError,
    format_value,
    parse_metric,
    parse_value,
    row_label,
)

NOISE = 0.01  # changes under 1% are not coloured: within run-to-run noise
_RULE = re.compile(r"^(?P<metric>.+?)\s*(?P<sign>[+-])\s*(?P<amount>[0-9.]+\s*[A-Za-z%/µ]*)$")
_BARE = re.compile(r"^(p\(?\d+(?:\.\d+)?\)?|mean|min|max)$", re.IGNORECASE)
OVERVIEW = (
    "throughput",
    "throughput(sessions)",
    "started",
    "failed",
    "dropped",
    "rate(errors)",
    "rate(4xx)",
    "rate(5xx)",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A regression rule: ``metric`` is None for a bare latency statistic applied to every
    row (``head`` is then ``p99``, ``mean`` ...)."""

    text: str
    sign: str  # "+" or "-"
    amount: float
    relative: bool  # the amount is a share of the baseline
    metric: Metric | None = None
    head: str | None = None

    def metrics(self, runs: Sequence[Snapshot]) -> list[Metric]:
        """The metrics the rule covers: the one it names, or for a bare statistic every
        row the baseline has samples of."""
        if self.metric is not None:
            return [self.metric]
        rows = [row for row in range(LATENCY_ROWS) if runs[0].latency_count(row)]
        return [parse_metric(f"{self.head}({row_label(row)})") for row in rows]

    def matches_nothing(self, runs: Sequence[Snapshot]) -> bool:
        """No run has data for any metric the rule could cover."""
        if self.metric is not None:
            return all(measure(self.metric, run) is None for run in runs)
        return not any(run.latency_count(row) for run in runs for row in range(LATENCY_ROWS))

    def fails(self, base: float, value: float) -> bool:
        change = value - base if self.sign == "+" else base - value
        if self.relative:
            if base == 0:
                return change > 0
            return change / abs(base) > self.amount
        return change > self.amount


def parse_rule(text: str) -> Rule:
    written = " ".join(text.split())
    match = _RULE.match(written)
    if match is None:
        raise ThresholdError(
            f"{written!r}: expected METRIC +AMOUNT or METRIC -AMOUNT, such as 'p99 +10%', "
            "'p99(DATA) +5ms', 'throughput -5%' or 'rate(errors) +0.5pp'"
        )
    metric_text, sign, amount_text = (
        match.group("metric"),
        match.group("sign"),
        match.group("amount").replace(" ", ""),
    )
    head = None
    metric = None
    try:
        if _BARE.match(metric_text.strip()):
            head = metric_text.strip().lower()
            parse_metric(f"{head}(DATA)")  # checks the percentile
            kind = Kind.LATENCY
        else:
            metric = parse_metric(metric_text)
            kind = metric.kind
        if amount_text.endswith("%"):
            amount, relative = float(amount_text[:-1]) / 100, True
        elif amount_text.lower().endswith("pp"):
            if kind is not Kind.SHARE:
                raise ThresholdError("percentage points (pp) apply to rates only")
            amount, relative = float(amount_text[:-2]) / 100, False
        else:
            amount, relative = parse_value(kind, amount_text), False
    except (ThresholdError, ValueError) as error:
        raise ThresholdError(f"{written!r}: {error}") from None
    return Rule(written, sign, amount, relative, metric, head)


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: Rule
    metric: Metric
    run: int  # index of the compared run (1 = the first after the baseline)
    base: float
    value: float | None  # None: the run has no data where the baseline has some

    @property
    def failed(self) -> bool:
        return self.value is None or self.rule.fails(self.base, self.value)


def check_rules(rules: Sequence[Rule], runs: Sequence[Snapshot]) -> list[RuleResult]:
    """Every rule on every metric it covers, for each run against the baseline. A run
    without data where the baseline has some fails; metrics the baseline has no data for
    are left out (there is nothing to hold the run to)."""
    results = []
    base_run = runs[0]
    for rule in rules:
        for metric in rule.metrics(runs):
            base = measure(metric, base_run)
            if base is None:
                continue
            for index, run in enumerate(runs[1:], start=1):
                results.append(RuleResult(rule, metric, index, base, measure(metric, run)))
    return results


def change(base: float | None, value: float | None) -> float | None:
    """Relative change from base to value; None when it cannot be said."""
    if base is None or value is None:
        return None
    if base == 0:
        return 0.0 if value == 0 else math.inf
    return (value - base) / abs(base)


def change_text(metric: Metric, base: float | None, value: float | None) -> Text:
    """The change in percent (in percentage points for rates), green when better, red
    when worse, dim within the noise."""
    if metric.kind is Kind.SHARE and base is not None and value is not None:
        points = (value - base) * 100
        if abs(points) < 0.01:
            return Text(f"{points:+.2f}pp", style="dim")
        better = (points > 0) == metric.higher_is_better
        return Text(f"{points:+.2f}pp", style="green" if better else "bold red")
    relative = change(base, value)
    if relative is None:
        return Text("-", style="dim")
    text = "new" if math.isinf(relative) else f"{relative:+.1%}"
    if abs(relative) < NOISE:
        return Text(text, style="dim")
    better = (relative > 0) == metric.higher_is_better
    return Text(text, style="green" if better else "bold red")


def _value(metric: Metric, value: float | None) -> str:
    return "-" if value is None else format_value(metric.kind, value)


def run_names(runs: Sequence[Snapshot], names: Sequence[str] | None = None) -> list[str]:
    if names is not None:
        return list(names)
    return [f"{chr(ord('A') + i)}" for i in range(len(runs))]


def _columns(table: Table, names: Sequence[str]) -> None:
    table.add_column(names[0] + " (baseline)", justify="right")
    for name in names[1:]:
        table.add_column(name, justify="right")
        table.add_column("change", justify="right")


def _cells(metric: Metric, runs: Sequence[Snapshot]) -> list[str | Text]:
    values = [measure(metric, run) for run in runs]
    cells: list[str | Text] = [_value(metric, values[0])]
    for value in values[1:]:
        cells += [_value(metric, value), change_text(metric, values[0], value)]
    return cells


def overview_table(runs: Sequence[Snapshot], names: Sequence[str]) -> Table:
    table = Table(title="Throughput and errors", title_justify="left")
    table.add_column("metric")
    _columns(table, names)
    for text in OVERVIEW:
        metric = parse_metric(text)
        table.add_row(str(metric), *_cells(metric, runs))
    return table


def latency_table(runs: Sequence[Snapshot], names: Sequence[str]) -> Table:
    table = Table(
        title="Latency per command and percentile (service time; message, session and "
        "start lag from intended start)",
        title_justify="left",
    )
    table.add_column("command")
    table.add_column("stat")
    _columns(table, names)
    rows = [row for row in range(LATENCY_ROWS) if any(run.latency_count(row) for run in runs)]
    for row in rows:
        stats = [f"p{q:g}" for q in SUMMARY_PERCENTILES] + ["max"]
        for k, stat in enumerate(stats):
            metric = parse_metric(f"{stat}({row_label(row)})")
            table.add_row(
                row_label(row) if k == 0 else "",
                stat,
                *_cells(metric, runs),
                end_section=k == len(stats) - 1,
            )
    return table


def replies_table(runs: Sequence[Snapshot], names: Sequence[str]) -> Table | None:
    """Each command's reply codes as shares of its replies, where any run differs."""
    table = Table(title="Reply codes per command (share of that command's replies)",
                  title_justify="left")  # fmt: skip
    table.add_column("command")
    table.add_column("code", justify="right")
    table.add_column("meaning")
    table.add_column(names[0] + " (baseline)", justify="right")
    for name in names[1:]:
        table.add_column(name, justify="right")
        table.add_column("change", justify="right")
    any_row = False
    for step in range(STEP_COUNT):
        totals = [int(run.replies[step].sum()) for run in runs]
        if not any(totals):
            continue
        codes = sorted({code for run in runs for code in run.reply_codes(Step(step))})
        for index, code in enumerate(codes):
            shares = [
                int(run.replies[step, code]) / total if total else None
                for run, total in zip(runs, totals, strict=True)
            ]
            cells: list[str | Text] = [_share(runs[0], step, code, shares[0])]
            for run, share in zip(runs[1:], shares[1:], strict=True):
                cells.append(_share(run, step, code, share))
                cells.append(_points(code, shares[0], share))
            table.add_row(
                Step(step).label if index == 0 else "",
                Text(str(code), style=code_style(code)),
                reply_meaning(code),
                *cells,
            )
            any_row = True
    return table if any_row else None


def _share(run: Snapshot, step: int, code: int, share: float | None) -> str:
    if share is None:
        return "-"
    return f"{share:.2%} ({int(run.replies[step, code]):,})"


def _points(code: int, base: float | None, share: float | None) -> Text:
    if base is None or share is None:
        return Text("-", style="dim")
    points = (share - base) * 100
    text = f"{points:+.2f}pp"
    if base == 0 and share > 0:
        text = "new " + text
    elif share == 0 and base > 0:
        text = "gone " + text
    if abs(points) < 0.01:
        return Text(text, style="dim")
    good = code // 100 == 2 or code in (354, 334)
    better = (points > 0) == good
    return Text(text, style="green" if better else "bold red")


def rules_table(results: Sequence[RuleResult], names: Sequence[str]) -> Table:
    failed = sum(r.failed for r in results)
    title = (
        f"Regression rules: {failed} of {len(results)} checks failed"
        if failed
        else f"Regression rules: all {len(results)} checks passed"
    )
    table = Table(title=title, title_justify="left", title_style="bold red" if failed else "bold")
    for column in ("rule", "metric", "run", "baseline", "value", "change", "result"):
        table.add_column(column, justify="right" if column in ("baseline", "value") else "left")
    for r in results:
        missing = r.value is None
        table.add_row(
            r.rule.text,
            str(r.metric),
            names[r.run],
            format_value(r.metric.kind, r.base),
            "no data" if r.value is None else format_value(r.metric.kind, r.value),
            Text(f"{names[r.run]} has none", style="bold red")
            if missing
            else change_text(r.metric, r.base, r.value),
            Text("FAIL", style="bold red") if r.failed else Text("pass", style="green"),
        )
    return table


def runs_table(runs: Sequence[Snapshot], names: Sequence[str], folders: Sequence[str]) -> Table:
    table = Table(title="Runs", title_justify="left", box=None)
    for column in ("", "folder", "scenario", "load", "target", "started", "state", "engine"):
        table.add_column(column)
    for name, run, folder in zip(names, runs, folders, strict=True):
        info = run.info
        table.add_row(
            name,
            folder,
            info.scenario,
            info.load,
            info.target,
            info.started_at,
            run.state.value,
            info.engine or "not noted",
        )
    return table


def engines_differ(runs: Sequence[Snapshot]) -> Text | None:
    """A warning when the runs' engines ran differently (compiled, interpreted): what the
    client itself limits (a closed model's rate, start lag) may differ by the tool."""
    engines = sorted({run.info.engine for run in runs if run.info.engine})
    if len(engines) < 2:
        return None
    return Text(
        f"The runs' engines differ ({' / '.join(engines)}): where the client itself was "
        "the limit (a closed model's rate, start lag, a saturated engine), differences "
        "may come from smtpbench, not from the server.",
        style="bold yellow",
    )


def comparison(
    runs: Sequence[Snapshot],
    folders: Sequence[str],
    rule_results: Sequence[RuleResult] = (),
) -> RenderableType:
    names = run_names(runs)
    parts: list[RenderableType] = [runs_table(runs, names, folders)]
    warning = engines_differ(runs)
    if warning is not None:
        parts.append(warning)
    parts += [overview_table(runs, names), latency_table(runs, names)]
    replies = replies_table(runs, names)
    if replies is not None:
        parts.append(replies)
    if rule_results:
        parts.append(rules_table(rule_results, names))
    return Group(*parts)
