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
        room = self.room()
        hidden = 0
        if room is not None and len(rows) > room:
            # Trouble and the focus sort first; say that more exist and where to see them.
            hidden = len(rows) - (room - 1)
            rows = rows[: room - 1]
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
        lines = aligned(columns, cells, width)
        if hidden:
            lines.append(Content.styled(f"+{hidden} more: r lists all", "dim"))
        self.put(lines, (tuple(rows), width, hidden))

    def room(self) -> int | None:
        """Rows the pane may show inside its border (its CSS max-height), if limited."""
        limit = self.styles.max_height
        if limit is None or not limit.is_cells:
            return None
        return max(1, int(limit.value) - self.styles.gutter.height)
