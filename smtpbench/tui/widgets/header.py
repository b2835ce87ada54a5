"""The top line: target, scenario, state, time and progress."""

from __future__ import annotations

from textual.content import Content

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
        left = Content.assemble(
            ("smtpbench  ", "bold"),
            (info.target, "bold cyan"),
            "  scenario: ",
            (info.scenario, "bold"),
            "  ",
            (snapshot.state.value.upper(), STATE_STYLES[snapshot.state]),
        )
        right = Content.assemble(
            clock,
            "  [",
            ("#" * filled, "green"),
            ("." * (BAR_WIDTH - filled), "dim"),
            f"] {done:4.0%}",
        )
        note = Content.styled(view.note, "italic")
        width = self.content_size.width
        if width and left.cell_length + right.cell_length + 2 > width:
            # Too narrow for one line: time and progress go on a second one.
            lines = [left, Content.assemble(right, "  ", note)]
        else:
            gap = max(2, width - left.cell_length - right.cell_length)
            lines = [Content.assemble(left, " " * gap, right)]
            if view.note:
                lines.append(note)
        self.put(lines, (left.plain, right.plain, view.note, width))
