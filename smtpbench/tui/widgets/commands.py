"""Per-command service time: count, rate, percentiles, max and error share."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from smtpbench.metrics.kinds import MESSAGE_LATENCY, START_LAG
from smtpbench.protocol.steps import Step
from smtpbench.tui.view import View
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
        wide = self.size.width >= WIDE or self.size.width == 0
        table = Table(box=None, padding=(0, 0, 0, 1), expand=True, header_style="bold")
        table.add_column("command", no_wrap=True)
        table.add_column("count", justify="right", no_wrap=True)
        table.add_column("rate/s", justify="right", no_wrap=True)
        for q in QUANTILES:
            if wide or q != 90.0:
                table.add_column(f"p{q:g}", justify="right", no_wrap=True)
        if wide:
            table.add_column("max", justify="right", no_wrap=True)
        table.add_column("err%", justify="right", no_wrap=True)
        replay = snapshot.is_replay
        if replay:
            table.add_column("div%", justify="right", no_wrap=True)
        for number, step in enumerate(listed_steps(view), start=1):
            histogram = snapshot.histogram(step)
            count = histogram.count
            errors = snapshot.step_errors(step)
            attempts = max(count, errors)
            share = errors / attempts if attempts else 0.0
            focus = step is view.focus
            label = f"{number}>{step.label}<" if focus else f"{number} {step.label}"
            cells: list[str | Text] = [
                Text(label, style="bold reverse" if focus else ""),
                f"{count:,}",
                f"{view.recent_rate(step):,.0f}",
                format_duration(p[step, 0]),
            ]
            if wide:
                cells.append(format_duration(p[step, 1]))
            cells.append(format_duration(p[step, 2]))
            if wide:
                cells.append(format_duration(histogram.maximum) if count else "-")
            cells.append(Text(f"{share:.1%}", style="red" if share else "dim"))
            if replay:
                compared, differed = snapshot.divergence_of(step)
                diverged = differed / compared if compared else 0.0
                cells.append(
                    Text(
                        f"{diverged:.1%}" if compared else "-",
                        style="yellow" if differed else "dim",
                    )
                )
            table.add_row(*cells)
        message = snapshot.histogram(MESSAGE_LATENCY)
        caption = Text.assemble(
            ("from intended start: " if wide else "intended start: ", "italic"),
            f"message p50 {format_duration(p[MESSAGE_LATENCY, 0])} ",
            f"p99 {format_duration(p[MESSAGE_LATENCY, 2])}",
        )
        if wide:
            caption.append(f" max {format_duration(message.maximum) if message.count else '-'}")
            caption.append(f"   start lag p99 {format_duration(p[START_LAG, 2])}")
        table.caption = caption
        table.caption_justify = "left"
        # The caption wraps in a narrow pane: its lines count in the pane's height.
        caption_lines = len(caption.wrap(self.app.console, max(1, self.content_size.width)))
        self.put(table, (table.row_count, caption_lines))
