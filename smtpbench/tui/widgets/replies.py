"""Reply codes per command with their RFC 5321 meaning, coloured by class."""

from __future__ import annotations

from textual.content import Content

from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.steps import Step
from smtpbench.report.summary import code_style
from smtpbench.tui.view import View
from smtpbench.tui.widgets.columns import Cell, Column, aligned
from smtpbench.tui.widgets.pane import Pane

MEANING_WIDTH = 40


class ReplyCodes(Pane):
    def show(self, view: View) -> None:
        snapshot = view.snapshot
        rows: list[tuple[int, Step, int, int]] = []
        for step in Step:
            for code, count in snapshot.reply_codes(step).items():
                # The command in focus first, then trouble (4xx/5xx), then the rest.
                rank = 0 if step is view.focus else 1 if code >= 400 else 2
                rows.append((rank, step, code, count))
        rows.sort(key=lambda row: (row[0], row[1], row[2]))
        if not rows:
            self.put([Content.styled(" no replies yet", "dim")], "none")
            return
        # The meaning needs room; a narrow pane shows command, code and count only.
        width = self.content_size.width
        meanings = width == 0 or width >= MEANING_WIDTH
        columns = [Column(), Column()]
        if meanings:
            columns.append(Column(stretch=1))
        columns.append(Column(right=True))
        cells: list[list[Cell]] = []
        for _, step, code, count in rows:
            row: list[Cell] = [
                Content.styled(step.label, "bold" if step is view.focus else "dim"),
                Content.styled(str(code), code_style(code)),
            ]
            if meanings:
                row.append(reply_meaning(code))
            row.append(f"{count:,}")
            cells.append(row)
        self.put(aligned(columns, cells, width), (tuple(rows), width))
