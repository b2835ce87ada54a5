"""The run's vital signs: in flight, waiting, dropped, start lag, connection errors."""

from __future__ import annotations

from textual.content import Content

from smtpbench.metrics.kinds import START_LAG, ErrorClass
from smtpbench.report.live import recent_rate, recent_target
from smtpbench.tui.view import View
from smtpbench.tui.widgets.commands import QUANTILES
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


def _number(value: int, alarm: bool = False) -> Content:
    return Content.styled(f"{value:,}", "bold red" if alarm and value else "bold")


class RunCounters(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        c = snapshot.counters
        # The command table asks for the same percentiles: one computation per snapshot.
        lag = snapshot.percentiles(QUANTILES)[START_LAG, QUANTILES.index(99.0)]
        pairs = [
            ("in flight", _number(c.in_flight), "waiting", _number(c.waiting)),
            ("dropped", _number(c.dropped, True), "lag p99", Content(format_duration(lag))),
            (
                "accepted",
                _number(c.messages_accepted),
                "refused",
                _number(c.messages_rejected, True),
            ),
        ]
        lines = [
            Content.assemble(name, " ", value, "   ", other, " ", other_value)
            for name, value, other, other_value in pairs
        ]
        achieved = recent_rate(snapshot)
        target = recent_target(snapshot)  # over the same seconds: a ramp is not behind
        rate = Content.styled(f"achieved {achieved:,.1f}/s", "bold")
        if target is not None:
            rate = rate.append(f" of {target:,.1f}/s")
        lines.append(rate)
        share = snapshot.schedule_share
        if target is not None and share is not None and not snapshot.is_replay:
            # What started against what the schedule asked for so far, pauses excluded.
            schedule = Content.styled(f"{share:.0%} of schedule started", "dim")
            width = self.content_size.width
            if width == 0 or rate.cell_length + 2 + schedule.cell_length <= width:
                lines[-1] = Content.assemble(rate, ", ", schedule)
            else:
                lines.append(schedule)
        if snapshot.info.delivery == "mta":
            # MTA-like delivery: sessions that try messages again count among the starts.
            text = f"MTA-like: {c.sessions_retried:,} retries, {c.messages_expired:,} expired"
            width = self.content_size.width
            if width and len(text) > width:  # a narrow pane: the figures, never cut
                text = f"retries {c.sessions_retried:,}   expired {c.messages_expired:,}"
            lines.append(Content.styled(text, "cyan"))
        if snapshot.cancelled:
            # Sessions smtpbench cut short at a stop: not the server's errors.
            text = f"cancelled at stop {snapshot.cancelled:,}"
            width = self.content_size.width
            if width == 0 or len(text) + 13 <= width:
                text += " (not errors)"
            lines.append(Content.styled(text, "yellow"))
        errors = snapshot.errors_by_class()
        seen = [(name, errors[e]) for e, name in CONNECTION_ERRORS.items() if errors.get(e)]
        if seen:
            listed = ", ".join(f"{name} {n:,}" for name, n in seen)
            width = self.content_size.width
            label = "conn errors: " if width == 0 or len(listed) + 13 <= width else "conn: "
            lines.append(Content.assemble((label, "dim"), (listed, "red")))
        else:
            lines.append(Content.styled("conn errors: none", "dim"))
        if view.thresholds:
            lines.append(threshold_line(view))
        self.put(lines)


def threshold_line(view: View) -> Content:
    """``thresholds 3 ok, 1 failing: p99(DATA) < 250ms (312ms)``; thresholds on transit
    (run --through) have their figures only after the drain, and say so."""
    later = [r for r in view.thresholds if r.threshold.metric.is_transit and r.measured is None]
    failing = [r for r in view.thresholds if not r.passed and r not in later]
    parts: list[tuple[str, str]] = [
        ("thresholds ", "dim"),
        (f"{len(view.thresholds) - len(failing) - len(later)} ok", "green"),
    ]
    if later:
        parts.append((f", {len(later)} on transit after the drain", "dim"))
    if failing:
        first = failing[0]
        parts.append((f", {len(failing)} failing: ", "bold red"))
        parts.append((f"{first.threshold} ({first.measured_text})", "red"))
    return Content.assemble(*parts)
