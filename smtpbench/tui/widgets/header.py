"""The top line: target, scenario, state, time and progress."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from smtpbench.metrics.snapshot import RunState
from smtpbench.report.summary import STATE_STYLES
from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_clock

BAR_WIDTH = 16


class RunHeader(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        info = snapshot.info
        elapsed = snapshot.elapsed
        total = elapsed + view.remaining if view.remaining is not None else None
        done = min(1.0, elapsed / total) if total else 0.0
        if snapshot.state in (RunState.DONE, RunState.INTERRUPTED):
            done = 1.0 if snapshot.state is RunState.DONE else done
        filled = round(done * BAR_WIDTH)
        clock = format_clock(elapsed)
        if total is not None:
            clock += f" / {format_clock(round(total))}"
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(no_wrap=True, justify="right")
        left = Text.assemble(
            ("smtpbench  ", "bold"),
            (info.target, "bold cyan"),
            "  scenario: ",
            (info.scenario, "bold"),
            "  ",
            (snapshot.state.value.upper(), STATE_STYLES[snapshot.state]),
        )
        right = Text.assemble(
            clock,
            "  [",
            ("#" * filled, "green"),
            ("." * (BAR_WIDTH - filled), "dim"),
            f"] {done:4.0%}",
        )
        note = Text(view.note, style="italic")
        if self.size.width and len(left) + len(right) + 2 > self.size.width:
            # Too narrow for one line: time and progress go on a second one.
            grid = Table.grid(expand=True)
            grid.add_column(no_wrap=True, overflow="ellipsis")
            grid.add_row(left)
            grid.add_row(Text.assemble(right, "  ", note))
        else:
            grid.add_row(left, right)
            if view.note:
                grid.add_row(note, "")
        self.put(grid, grid.row_count, (left.plain, right.plain, view.note))
