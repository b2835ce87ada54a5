"""The end-of-run summary as rich renderables: the same tables live, at the end of a
headless run, and from ``smtpbench report`` on a results folder."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpbench.metrics.kinds import (
    MESSAGE_LATENCY,
    SESSION_LATENCY,
    START_LAG,
    ErrorClass,
)
from smtpbench.metrics.snapshot import SUMMARY_PERCENTILES, RunState, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.reply_rows import reply_rows
from smtpbench.units import format_clock, format_duration

CODE_STYLES = {2: "green", 3: "cyan", 4: "yellow", 5: "red"}
STATE_STYLES = {
    RunState.STARTING: "cyan",
    RunState.RUNNING: "green",
    RunState.PAUSED: "yellow",
    RunState.DRAINING: "cyan",
    RunState.DONE: "bold green",
    RunState.INTERRUPTED: "bold yellow",
}


# Unexpected replies are the server's answer, not a broken connection; what smtpbench
# cancelled at a stop is not the server's at all.
ERROR_STYLES = {ErrorClass.REPLY: "yellow", ErrorClass.CANCELLED: "dim"}


def code_style(code: int) -> str:
    return CODE_STYLES.get(code // 100, "red")


def _share(count: int, whole: int) -> str:
    return f"{count / whole:.1%}" if whole else "-"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.1f}" if seconds > 0 else "-"


def header(snapshot: Snapshot) -> Table:
    info = snapshot.info
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    state = Text(snapshot.state.word, style=STATE_STYLES[snapshot.state])
    grid.add_row("scenario", f"{info.scenario}   [dim]{info.load}[/]")
    grid.add_row("target", info.target)
    after = f"   after {format_clock(snapshot.elapsed)}"
    if info.planned_duration and snapshot.state is RunState.INTERRUPTED:
        after += f" of {format_clock(info.planned_duration)} planned"
    grid.add_row("state", Text.assemble(state, after))
    grid.add_row("seed", f"{info.seed}   [dim]started {info.started_at}, {info.tool}[/]")
    return grid


def throughput_table(snapshot: Snapshot) -> Table:
    c = snapshot.counters
    elapsed = snapshot.elapsed
    table = Table(title="Throughput", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    table.add_row("sessions", f"{c.started:,} started", achieved_text(snapshot))
    if c.sessions_retried:
        table.add_row(
            "",
            f"{c.sessions_retried:,} retries",
            "sessions of messages tried again, counted in the schedule and the starts above",
        )
    table.add_row("", f"{c.completed - c.failed:,} ok", "every reply as expected")
    failed = snapshot.server_failed
    table.add_row(
        "",
        Text(f"{failed:,} failed", style="red" if failed else ""),
        "an error or a reply not counted as success",
    )
    if snapshot.cancelled:
        table.add_row(
            "",
            Text(f"{snapshot.cancelled:,} cancelled", style="yellow"),
            "cut short by smtpbench at the stop: not the server's errors",
        )
    table.add_row(
        "",
        Text(f"{c.dropped:,} dropped", style="red" if c.dropped else ""),
        "due but never started: the backlog was full",
    )
    table.add_row(
        "messages",
        f"{c.messages_accepted:,} accepted",
        f"{_rate(c.messages_accepted, elapsed)} messages/s",
    )
    if c.messages_rejected or c.messages_aborted:
        table.add_row(
            "",
            Text(f"{c.messages_rejected:,} refused", style="yellow"),
            f"{c.messages_aborted:,} cut short by a connection error",
        )
    if snapshot.info.delivery == "mta":
        ended = c.messages_accepted + c.messages_rejected + c.messages_expired + c.messages_queued
        table.add_row(
            "delivery",
            "MTA-like: 4xx retried",
            f"{_share(c.messages_first_attempt, ended)} taken at the first attempt, "
            f"{_share(c.messages_accepted, ended)} in the end",
        )
        table.add_row(
            "",
            f"{c.messages_deferred:,} deferrals",
            f"{c.messages_expired:,} expired (max age), {c.messages_queued:,} still queued "
            "at the end",
        )
    refused = f"{c.recipients_rejected:,} refused" if c.recipients_rejected else ""
    if refused and snapshot.info.delivery == "mta":
        refused += " (each deferral counted)"
    table.add_row("recipients", f"{c.recipients_accepted:,} accepted", refused)
    return table


def achieved_text(snapshot: Snapshot) -> str:
    """``20.0 sessions/s (100.0% of the 400 the schedule asked for)``: what started against
    what the schedule asked for over the time that ran, pauses excluded; never against the
    rate of the last stage."""
    text = f"{snapshot.achieved_rate:,.1f} sessions/s"
    share = snapshot.schedule_share
    if snapshot.target_rate is not None and share is not None and not snapshot.is_replay:
        text += f"  ({share:.1%} of the {snapshot.counters.scheduled:,} the schedule asked for)"
    return text


def _latency_columns(table: Table) -> None:
    table.add_column("count", justify="right")
    table.add_column("rate/s", justify="right")
    for q in SUMMARY_PERCENTILES:
        table.add_column(f"p{q:g}", justify="right")
    table.add_column("max", justify="right")


def service_table(snapshot: Snapshot) -> Table:
    table = Table(
        title="Service time per command (sent to reply complete)",
        title_justify="left",
    )
    table.add_column("command")
    _latency_columns(table)
    table.add_column("errors", justify="right")
    percentiles = snapshot.percentiles()
    for step in snapshot.steps_seen():
        histogram = snapshot.histogram(step)
        count = histogram.count
        errors = snapshot.step_errors(step)
        attempts = max(count, errors)
        share = errors / attempts if attempts else 0.0
        table.add_row(
            step.label,
            f"{count:,}",
            _rate(count, snapshot.elapsed),
            *(format_duration(v) for v in percentiles[step]),
            format_duration(histogram.maximum) if count else "-",
            Text(f"{share:.1%}", style="red" if share else "dim"),
        )
    return table


def intended_table(snapshot: Snapshot) -> Table:
    table = Table(
        title="From intended start (what a sender feels; includes waiting for a slot)",
        title_justify="left",
    )
    table.add_column("measure")
    _latency_columns(table)
    percentiles = snapshot.percentiles()
    labels = {
        START_LAG: "start lag",
        MESSAGE_LATENCY: "message (to final reply)",
        SESSION_LATENCY: "session (to the end)",
    }
    for row, label in labels.items():
        histogram = snapshot.histogram(row)
        count = histogram.count
        table.add_row(
            label,
            f"{count:,}",
            _rate(count, snapshot.elapsed),
            *(format_duration(v) for v in percentiles[row]),
            format_duration(histogram.maximum) if count else "-",
        )
    return table


def replies_table(snapshot: Snapshot) -> Table:
    """Each command's codes, and under the codes of each class the enhanced status codes
    (RFC 3463) its replies carried, their share of all the command's replies."""
    table = Table(title="Reply codes per command", title_justify="left")
    table.add_column("command")
    table.add_column("code", justify="right")
    table.add_column(
        "meaning (RFC 5321; enhanced: RFC 3463)" if snapshot.enhanced else "meaning (RFC 5321)"
    )
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for step in Step:
        for index, row in enumerate(reply_rows(snapshot, step)):
            style = CODE_STYLES.get(row.reply_class, "red")
            table.add_row(
                step.label if index == 0 else "",
                Text(row.code, style=f"{style} italic" if row.enhanced else style),
                Text(f"  {row.meaning}", style="dim") if row.enhanced else row.meaning,
                Text(f"{row.count:,}", style="dim") if row.enhanced else f"{row.count:,}",
                Text(f"{row.share:.1%}", style="dim") if row.enhanced else f"{row.share:.1%}",
            )
    return table


def divergence_table(snapshot: Snapshot) -> Table | None:
    """Replays: per command, replies compared with the recording and codes that differed."""
    if snapshot.divergence is None:
        return None
    table = Table(
        title="Divergence from the recording (reply code or enhanced code differs)",
        title_justify="left",
    )
    table.add_column("command")
    table.add_column("compared", justify="right")
    table.add_column("differed", justify="right")
    table.add_column("share", justify="right")
    for step in Step:
        compared, differed = snapshot.divergence_of(step)
        if not compared:
            continue
        share = differed / compared
        table.add_row(
            step.label,
            f"{compared:,}",
            f"{differed:,}",
            Text(f"{share:.1%}", style="yellow" if differed else "dim"),
        )
    return table


def errors_table(snapshot: Snapshot) -> Table | None:
    by_class = snapshot.errors_by_class()
    if not by_class:
        return None
    table = Table(title="Errors by class", title_justify="left")
    table.add_column("class")
    table.add_column("count", justify="right")
    table.add_column("where")
    for error, count in sorted(by_class.items(), key=lambda item: -item[1]):
        row = snapshot.errors[error]
        where = ", ".join(f"{Step(s).label} {int(n):,}" for s, n in enumerate(row) if n)
        style = ERROR_STYLES.get(error, "red")
        table.add_row(Text(error.label, style=style), f"{count:,}", where)
    return table


CLIENTS_SHOWN = 20


def clients_table(snapshot: Snapshot, limit: int = CLIENTS_SHOWN) -> RenderableType | None:
    """Figures per client, the busiest first, when sessions came from several clients: in
    two tables narrow enough for 80 columns, so that no figure is cut."""
    rows = sorted(snapshot.clients, key=lambda row: (-row.sessions, row.client))
    if len(rows) < 2:
        return None
    shown = rows[:limit]
    more = f" (the {limit} with most sessions of {len(rows)})" if len(rows) > limit else ""
    counts = Table(title=f"Per client{more}: sessions and replies", title_justify="left")
    latency = Table(title="Per client: latency", title_justify="left")
    for table in (counts, latency):
        table.add_column("client", no_wrap=True)
    for name in ("sessions", "failed", "accepted", "refused", "4xx", "5xx"):
        counts.add_column(name, justify="right", no_wrap=True)
    for name in ("message p50", "message p99", "DATA end p50", "DATA end p99"):
        latency.add_column(name, justify="right", no_wrap=True)
    for row in shown:
        replies = sum(row.replies)
        counts.add_row(
            row.client,
            f"{row.sessions:,}",
            Text(f"{row.failed:,}", style="red" if row.failed else ""),
            f"{row.accepted:,}",
            Text(f"{row.refused:,}", style="yellow" if row.refused else ""),
            _share(row.replies[2], replies),
            _share(row.replies[3], replies),
        )
        message = row.histogram("message").percentiles([50, 99])
        data_end = row.histogram("data_end").percentiles([50, 99])
        latency.add_row(
            row.client,
            *(format_duration(v) if v == v else "-" for v in (*message, *data_end)),
        )
    return Group(counts, latency)


def failures_table(snapshot: Snapshot, limit: int = 5) -> Table | None:
    if not snapshot.failures:
        return None
    table = Table(title="Recent failures (newest first)", title_justify="left")
    table.add_column("time", justify="right")
    table.add_column("session", justify="right")
    table.add_column("step")
    table.add_column("what happened")
    for failure in reversed(snapshot.failures[-limit:]):
        table.add_row(
            format_clock(failure.time),
            f"#{failure.session}",
            failure.step,
            f"{failure.error}: {failure.detail}",
        )
    return table


def summary(snapshot: Snapshot) -> RenderableType:
    parts: list[RenderableType] = [
        header(snapshot),
        Text(),
        throughput_table(snapshot),
        Text(),
        service_table(snapshot),
        intended_table(snapshot),
        replies_table(snapshot),
    ]
    optionals = (
        divergence_table(snapshot),
        clients_table(snapshot),
        errors_table(snapshot),
        failures_table(snapshot),
    )
    for optional in optionals:
        if optional is not None:
            parts.append(optional)
    return Group(*parts)
