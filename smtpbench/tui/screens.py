"""Screens over the dashboard: help, transcripts of failures, the full summary."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from smtpbench.metrics.snapshot import Snapshot
from smtpbench.report.summary import summary
from smtpbench.units import format_clock

HELP = """\
[b]Keys[/b]
  p        pause or resume the schedule (sessions in flight finish)
  + / -    raise or lower the target rate by 10% (concurrency in the closed model)
  up/down  choose the command in focus; 1-9 pick one from the table
  l        latency chart: service time of the command in focus, or message
           latency from intended start (never both on one axis)
  [ / ]    shorten or lengthen the charts' time window (30 s to 1 h)
  t        transcripts of the recent failing sessions
  r        the full summary (as `smtpbench report` prints it)
  s        save a results snapshot now
  q        stop: drain, write results, keep the final screen; q again to leave
           (the run then reads STOPPED; sessions cut short by a second q are
           "cancelled at stop", not the server's errors)
  ?        this help

[b]Reading it[/b]
  Service time: from sending a command to its complete reply (the server's cost).
  From intended start: from when the schedule said a session should start, so a
  server or a tool falling behind shows there instead of being hidden.
  Dropped: sessions due while the cap and the backlog were full; never started.
  % of schedule: sessions started against those the schedule asked for so far
  (the integral of the rate, pauses excluded), not against the current rate.
  Reply codes: 2xx green, 4xx yellow, 5xx and connection errors red.
"""


class _TextScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,t,r", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    _TextScreen { align: center middle; }
    _TextScreen > VerticalScroll {
        width: 90%; height: 90%; border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, body: RenderableType, title: str) -> None:
        super().__init__()
        self._body = body
        self._title = title

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll(Static(self._body))
        scroll.border_title = self._title
        scroll.border_subtitle = "esc to close"
        yield scroll

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class HelpScreen(_TextScreen):
    def __init__(self) -> None:
        super().__init__(Text.from_markup(HELP), "Help")


class TranscriptScreen(_TextScreen):
    def __init__(self, snapshot: Snapshot) -> None:
        parts: list[RenderableType] = []
        for failure in reversed(snapshot.failures):
            table = Table(box=None, show_header=False, padding=(0, 1))
            table.add_column(style="cyan", no_wrap=True)
            table.add_column()
            for line in failure.transcript:
                if line.is_left_out:
                    table.add_row("", Text(line.sent, style="dim italic"))
                    continue
                table.add_row("C:", line.sent)
                table.add_row(
                    "S:", Text(line.reply or "(no reply)", style=_reply_style(line.reply))
                )
            head = Text.assemble(
                (f"{format_clock(failure.time)}  session #{failure.session}  ", "bold"),
                (f"{failure.step}: {failure.error}: {failure.detail}", "red"),
            )
            parts += [head, table, Text()]
        body: RenderableType = Group(*parts) if parts else Text("no failures so far")
        super().__init__(body, "Recent failures, newest first")


class SummaryScreen(_TextScreen):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(summary(snapshot), "Summary")


def _reply_style(reply: str) -> str:
    if not reply:
        return "red"
    return {"2": "green", "3": "cyan", "4": "yellow"}.get(reply[:1], "red")
