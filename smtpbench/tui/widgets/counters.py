"""The run's vital signs: in flight, waiting, dropped, start lag, connection errors."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from smtpbench.metrics.kinds import START_LAG, ErrorClass
from smtpbench.report.live import recent_rate
from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_duration

# Connection errors by class, with the short names the pane has room for.
CONNECTION_ERRORS = {
    ErrorClass.REFUSED: "refused",
    ErrorClass.RESET: "reset",
    ErrorClass.CLOSED: "closed",
    ErrorClass.TIMEOUT: "timeout",
    ErrorClass.PROTOCOL: "protocol",
    ErrorClass.TLS: "TLS",
}


def _number(value: int, alarm: bool = False) -> Text:
    return Text(f"{value:,}", style="bold red" if alarm and value else "bold")


class RunCounters(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        c = snapshot.counters
        lag = snapshot.percentiles((99.0,))[START_LAG, 0]
        pairs = [
            ("in flight", _number(c.in_flight), "waiting", _number(c.waiting)),
            ("dropped", _number(c.dropped, True), "lag p99", Text(format_duration(lag))),
            (
                "accepted",
                _number(c.messages_accepted),
                "refused",
                _number(c.messages_rejected, True),
            ),
        ]
        achieved = recent_rate(snapshot)
        target = snapshot.target_rate
        rate = Text(f"achieved {achieved:,.1f}/s", style="bold")
        if target is not None:
            rate.append(f" of {target:,.1f}/s", style="")
        errors = snapshot.errors_by_class()
        seen = [(name, errors[e]) for e, name in CONNECTION_ERRORS.items() if errors.get(e)]
        if seen:
            conn = Text("conn errors: ", style="dim")
            conn.append(", ".join(f"{name} {n:,}" for name, n in seen), style="red")
        else:
            conn = Text("conn errors: none", style="dim")
        lines = Table.grid(expand=True)
        lines.add_column(no_wrap=True, overflow="ellipsis")
        for name, value, other, other_value in pairs:
            lines.add_row(Text.assemble(name, " ", value, "   ", other, " ", other_value))
        lines.add_row(rate)
        lines.add_row(conn)
        if view.thresholds:
            lines.add_row(threshold_line(view))
        self.put(lines, lines.row_count)


def threshold_line(view: View) -> Text:
    """``thresholds 3 ok, 1 failing: p99(DATA) < 250ms (312ms)``"""
    failing = [r for r in view.thresholds if not r.passed]
    line = Text("thresholds ", style="dim")
    line.append(f"{len(view.thresholds) - len(failing)} ok", style="green")
    if failing:
        first = failing[0]
        line.append(f", {len(failing)} failing: ", style="bold red")
        line.append(f"{first.threshold} ({first.measured_text})", style="red")
    return line
