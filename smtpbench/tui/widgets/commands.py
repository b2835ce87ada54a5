"""Per-command service time: count, rate, percentiles, max and error share."""

from __future__ import annotations

from textual.content import Content

from smtpbench.metrics.histogram import FloatArray
from smtpbench.metrics.kinds import MESSAGE_LATENCY, START_LAG
from smtpbench.protocol.steps import Step
from smtpbench.tui.view import View
from smtpbench.tui.widgets.columns import Cell, Column, aligned
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_duration

QUANTILES = (50.0, 90.0, 99.0)


def listed_steps(view: View) -> list[Step]:
    """The commands the table shows, in session order; the focus is always among them."""
    steps = view.snapshot.steps_seen()
    if view.focus not in steps:
        steps = sorted([*steps, view.focus])
    return steps


WIDE = 64  # narrower than this, the table drops p90 and max


class CommandTable(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        p = snapshot.percentiles(QUANTILES)
        width = self.content_size.width
        wide = width >= WIDE or width == 0
        replay = snapshot.is_replay
        # Room to spare goes evenly between the columns.
        columns = [Column("command", stretch=1), Column("count", right=True, stretch=1)]
        columns.append(Column("rate/s", right=True, stretch=1))
        for q in QUANTILES:
            if wide or q != 90.0:
                columns.append(Column(f"p{q:g}", right=True, stretch=1))
        if wide:
            columns.append(Column("max", right=True, stretch=1))
        columns.append(Column("err%", right=True, stretch=1))
        if replay:
            columns.append(Column("div%", right=True, stretch=1))
        rows: list[list[Cell]] = []
        for number, step in enumerate(listed_steps(view), start=1):
            histogram = snapshot.histogram(step)
            count = histogram.count
            errors = snapshot.step_errors(step)
            attempts = max(count, errors)
            share = errors / attempts if attempts else 0.0
            focus = step is view.focus
            label = f"{number}>{step.label}<" if focus else f"{number} {step.label}"
            cells: list[Cell] = [
                Content.styled(label, "bold reverse") if focus else label,
                f"{count:,}",
                f"{view.recent_rate(step):,.0f}",
                format_duration(p[step, 0]),
            ]
            if wide:
                cells.append(format_duration(p[step, 1]))
            cells.append(format_duration(p[step, 2]))
            if wide:
                cells.append(format_duration(histogram.maximum) if count else "-")
            cells.append(Content.styled(f"{share:.1%}", "red" if share else "dim"))
            if replay:
                compared, differed = snapshot.divergence_of(step)
                diverged = differed / compared if compared else 0.0
                cells.append(
                    Content.styled(
                        f"{diverged:.1%}" if compared else "-", "yellow" if differed else "dim"
                    )
                )
            rows.append(cells)
        lines = aligned(columns, rows, width)
        lines += self.caption(view, p, wide, width)
        self.put(lines)

    @staticmethod
    def caption(view: View, p: FloatArray, wide: bool, width: int) -> list[Content]:
        """Message latency from the intended start (and the start lag): one line, or
        two where the pane is too narrow for one."""
        snapshot = view.snapshot
        message = Content.assemble(
            ("from intended start: " if wide else "intended start: ", "italic"),
            f"message p50 {format_duration(p[MESSAGE_LATENCY, 0])} ",
            f"p99 {format_duration(p[MESSAGE_LATENCY, 2])}",
        )
        if not wide:
            return [message]
        histogram = snapshot.histogram(MESSAGE_LATENCY)
        message = message.append(
            f" max {format_duration(histogram.maximum) if histogram.count else '-'}"
        )
        lag = Content(f"start lag p99 {format_duration(p[START_LAG, 2])}")
        if width and message.cell_length + 3 + lag.cell_length > width:
            return [Content(" ") + message, Content(" ") + lag]
        return [Content.assemble(" ", message, "   ", lag)]
