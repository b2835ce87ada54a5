"""The top line: target, scenario, state, time and progress."""

from __future__ import annotations

import textwrap

from textual.content import Content

from smtpbench.report.progress import run_progress
from smtpbench.report.summary import STATE_STYLES
from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane

BAR_WIDTH = 16


class RunHeader(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        info = snapshot.info
        progress = run_progress(snapshot, view.remaining)
        done = progress.done
        filled = round(done * BAR_WIDTH)
        clock = progress.clock
        left = Content.assemble(
            ("smtpbench  ", "bold"),
            (info.target, "bold cyan"),
            (f"  ({view.where})" if view.where else "", "cyan"),
            "  scenario: ",
            (info.scenario, "bold"),
            "  ",
            (snapshot.state.word, STATE_STYLES[snapshot.state]),
        )
        right = Content.assemble(
            clock,
            "  [",
            ("#" * filled, "green"),
            ("." * (BAR_WIDTH - filled), "dim"),
            f"] {done:4.0%}",
        )
        # Narrower: the words "smtpbench" and "scenario:" and the bar go first, so that
        # the line stays one and leaves a row to the panes.
        short_left = Content.assemble(
            (info.target, "bold cyan"),
            (f" ({view.where})" if view.where else "", "cyan"),
            "  ",
            (info.scenario, "bold"),
            "  ",
            (snapshot.state.word, STATE_STYLES[snapshot.state]),
        )
        short_right = Content(f"{clock}  {done:4.0%}")
        width = self.content_size.width
        lines = []
        for one, other in ((left, right), (short_left, short_right)):
            if not width or one.cell_length + other.cell_length + 2 <= width:
                gap = max(2, width - one.cell_length - other.cell_length)
                lines = [Content.assemble(one, " " * gap, other)]
                break
        if not lines:
            # Too narrow for one line: time and progress go on a second one (and the
            # shorter form of the first when the long one does not fit either).
            lines = [left if left.cell_length <= width else short_left, right]
        # The note (where the results went, what a key did) is never cut: it wraps.
        wrapped = textwrap.wrap(view.note, width, break_on_hyphens=False) if width else [view.note]
        lines += [Content.styled(line, "italic") for line in wrapped if line]
        self.put(lines, (left.plain, right.plain, view.note, width))
