"""What a headless run shows while it runs: a rich panel on a terminal, one compact
line every few seconds elsewhere (CI logs stay short)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from smtpbench.metrics.kinds import MESSAGE_LATENCY, START_LAG
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.progress import run_progress
from smtpbench.report.summary import STATE_STYLES
from smtpbench.units import format_duration

RECENT_SECONDS = 5  # the "now" rate is averaged over the last few seconds


def recent_rate(snapshot: Snapshot, column: str = "started") -> float:
    """Per second over the last few complete intervals; the whole-run average before that."""
    series = snapshot.series
    if len(series) == 0:
        return snapshot.achieved_rate if column == "started" else 0.0
    window = min(RECENT_SECONDS, len(series))
    counts = series.column(column)[-window:]
    start = series.time[-window - 1] if len(series) > window else 0.0
    width = series.time[-1] - start
    return float(counts.sum() / width) if width > 0 else 0.0


def recent_target(snapshot: Snapshot) -> float | None:
    """Sessions/s the schedule asked for over the seconds ``recent_rate`` averages (None
    in the closed model): what the achieved rate compares with. During a ramp or a step
    the rate asked for now is ahead of it, and "achieved 41/s of 49/s" would read as
    falling behind while every session started on time."""
    now = snapshot.target_rate
    series = snapshot.series
    if now is None or len(series) == 0:
        return now
    if series.column("scheduled")[-1] < 0:  # results written before it was kept
        return now
    return recent_rate(snapshot, "scheduled")


def _focus_step(snapshot: Snapshot) -> Step:
    return Step.DATA_END if snapshot.latency_count(Step.DATA_END) else Step.BANNER


def _clock(snapshot: Snapshot, remaining: float | None) -> str:
    return run_progress(snapshot, remaining).clock.replace(" / ", "/")


def _of_schedule(snapshot: Snapshot) -> str:
    """`` (100% of schedule)``: started against what the schedule asked for so far."""
    share = snapshot.schedule_share
    if snapshot.target_rate is None or share is None or snapshot.is_replay:
        return ""
    return f" ({share:.0%} of schedule)"


def _achieved(snapshot: Snapshot, figure: str = "{}") -> str:
    """``achieved 41.0/s of 41.5/s``: started per second over the last few seconds, and
    what the schedule asked for over the same seconds."""
    text = f"achieved {figure.format(f'{recent_rate(snapshot):,.1f}')}/s"
    asked = recent_target(snapshot)
    return text if asked is None else f"{text} of {asked:,.1f}/s"


def live_line(snapshot: Snapshot, remaining: float | None) -> str:
    """One line for logs, every figure labelled."""
    c = snapshot.counters
    p = snapshot.percentiles((50.0, 99.0))
    focus = _focus_step(snapshot)
    target = snapshot.target_rate
    parts = [
        _clock(snapshot, remaining),
        snapshot.state.word.lower(),
        f"target {target:,.1f}/s" if target is not None else f"{c.in_flight} concurrent",
        _achieved(snapshot),
        f"started {c.started:,}{_of_schedule(snapshot)}",
        f"failed {snapshot.server_failed:,}",
        f"dropped {c.dropped:,}",
        f"in flight {c.in_flight:,}",
        f"accepted {c.messages_accepted:,}",
        f"{focus.label} p50 {format_duration(p[focus, 0])} p99 {format_duration(p[focus, 1])}",
        f"message p99 {format_duration(p[MESSAGE_LATENCY, 1])}",
        f"lag p99 {format_duration(p[START_LAG, 1])}",
    ]
    return "  ".join(parts)


def live_panel(snapshot: Snapshot, remaining: float | None) -> RenderableType:
    c = snapshot.counters
    info = snapshot.info
    top = Table.grid(padding=(0, 2))
    for _ in range(4):
        top.add_column()
    state = Text(snapshot.state.word, style=STATE_STYLES[snapshot.state])
    top.add_row(Text("smtpbench", style="bold"), info.target, info.scenario, state)
    done = run_progress(snapshot, remaining).done
    progress = Table.grid(padding=(0, 2))
    progress.add_column()
    progress.add_column(width=40)
    progress.add_column()
    progress.add_row(
        _clock(snapshot, remaining), ProgressBar(total=1.0, completed=done), f"{done:.0%}"
    )
    counts = Table.grid(padding=(0, 3))
    for _ in range(6):
        counts.add_column(justify="right")
    target = snapshot.target_rate
    counts.add_row(
        f"target [bold]{target:,.1f}[/]/s" if target is not None else "closed model",
        _achieved(snapshot, "[bold]{}[/]"),
        f"started [bold]{c.started:,}[/]",
        f"failed [bold {'red' if snapshot.server_failed else ''}]{snapshot.server_failed:,}[/]",
        f"dropped [bold {'red' if c.dropped else ''}]{c.dropped:,}[/]",
        f"in flight [bold]{c.in_flight:,}[/]",
    )
    table = Table(box=None, padding=(0, 2), header_style="bold dim")
    table.add_column("command")
    table.add_column("count", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("max", justify="right")
    table.add_column("errors", justify="right")
    p = snapshot.percentiles((50.0, 99.0))
    for step in snapshot.steps_seen():
        h = snapshot.histogram(step)
        errors = snapshot.step_errors(step)
        table.add_row(
            step.label,
            f"{h.count:,}",
            format_duration(p[step, 0]),
            format_duration(p[step, 1]),
            format_duration(h.maximum) if h.count else "-",
            Text(f"{errors:,}", style="red" if errors else "dim"),
        )
    for row, label in ((START_LAG, "start lag"), (MESSAGE_LATENCY, "message")):
        h = snapshot.histogram(row)
        table.add_row(
            Text(label + " (from intended start)", style="italic"),
            f"{h.count:,}",
            format_duration(p[row, 0]),
            format_duration(p[row, 1]),
            format_duration(h.maximum) if h.count else "-",
            "",
        )
    return Group(top, progress, counts, table)
