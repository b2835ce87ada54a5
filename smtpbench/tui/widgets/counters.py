"""The run's vital signs: in flight, waiting, dropped, start lag, connection errors."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from smtpbench.metrics.kinds import START_LAG, ErrorClass
from smtpbench.report.live import recent_rate
from smtpbench.tui.view import View
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


class RunCounters(Static):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        c = snapshot.counters
        grid = Table.grid(padding=(0, 1), expand=True)
        for _ in range(4):
            grid.add_column(no_wrap=True)
        lag = snapshot.percentiles((99.0,))[START_LAG, 0]
        grid.add_row("in flight", _number(c.in_flight), "waiting", _number(c.waiting))
        grid.add_row(
            "dropped", _number(c.dropped, alarm=True), "lag p99", Text(format_duration(lag))
        )
        grid.add_row(
            "accepted", _number(c.messages_accepted), "refused", _number(c.messages_rejected, True)
        )
        achieved = recent_rate(snapshot)
        target = snapshot.target_rate
        rate = Text(f"achieved {achieved:,.1f}/s", style="bold")
        if target is not None:
            rate.append(f" of target {target:,.1f}/s", style="")
        errors = snapshot.errors_by_class()
        counts = "/".join(str(errors.get(e, 0)) for e in CONNECTION_ERRORS)
        names = "conn " + "/".join(CONNECTION_ERRORS.values())
        alarm = any(errors.get(e, 0) for e in CONNECTION_ERRORS)
        lines = Table.grid(expand=True)
        lines.add_column()
        lines.add_row(grid)
        lines.add_row(rate)
        lines.add_row(Text.assemble((names + "  ", "dim"), (counts, "red" if alarm else "")))
        self.update(lines)
