"""Reply codes per command with their RFC 5321 meaning, coloured by class."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.steps import Step
from smtpbench.report.summary import code_style
from smtpbench.tui.view import View
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
        # The meaning needs room; a narrow pane shows command, code and count only.
        meanings = self.size.width == 0 or self.size.width >= MEANING_WIDTH
        table = Table(box=None, padding=(0, 0, 0, 1), expand=True, show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        if meanings:
            table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(justify="right", no_wrap=True)
        for _, step, code, count in rows:
            cells: list[str | Text] = [
                Text(step.label, style="bold" if step is view.focus else "dim"),
                Text(str(code), style=code_style(code)),
            ]
            if meanings:
                cells.append(reply_meaning(code))
            cells.append(f"{count:,}")
            table.add_row(*cells)
        if not rows:
            table.add_row(Text("no replies yet", style="dim"))
        self.put(table, table.row_count, (tuple(rows), meanings))
