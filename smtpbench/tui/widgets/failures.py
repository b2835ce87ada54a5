"""The most recent failing sessions, each with its transcript in short."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from smtpbench.metrics.snapshot import FailureRecord
from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_clock

SHOWN = 6


def short_transcript(failure: FailureRecord) -> str:
    """``EHLO 250, MAIL 250, RCPT 550``: the verbs sent and the codes got."""
    parts = []
    for line in failure.transcript:
        verb = line.sent.split(" ", 1)[0] if not line.sent.startswith("(") else "content"
        code = line.reply.split(" ", 1)[0] if line.reply else "no reply"
        parts.append(f"{verb} {code}")
    return ", ".join(parts)


class RecentFailures(Pane):
    def show(self, view: View) -> None:
        failures = view.snapshot.failures[-SHOWN:]
        if not failures:
            self.put(Text("no failures so far", style="dim"), 1, "none")
            return
        table = Table(box=None, padding=(0, 1), expand=True, show_header=False)
        table.add_column(no_wrap=True, style="dim")
        table.add_column(no_wrap=True, justify="right")
        table.add_column(no_wrap=True)
        table.add_column(ratio=2, no_wrap=True, overflow="ellipsis")
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis", style="dim")
        for failure in reversed(failures):
            table.add_row(
                format_clock(failure.time),
                f"#{failure.session}",
                failure.step,
                Text(f"{failure.error}: {failure.detail}", style="red"),
                f"({short_transcript(failure)})",
            )
        self.put(table, len(failures), tuple(f.session for f in failures))
