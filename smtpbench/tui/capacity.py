"""The dashboard under ``smtpbench capacity``: the run's dashboard with one more line
under the header, the search's step, rate and phase, and the bracket found so far.
The search sets the rate, so + and - only say so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.content import Content

from smtpbench.tui.app import DashboardApp, PaneWidget
from smtpbench.tui.view import View
from smtpbench.tui.widgets.header import RunHeader
from smtpbench.tui.widgets.pane import Pane


class CapacityLine(Pane):
    """Draws what ``line()`` says: ``capacity step 3 (at most 10): 600/s, measuring``."""

    DEFAULT_CSS = """
    CapacityLine {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, line: Callable[[], str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.line = line

    def show(self, view: View) -> None:
        text = self.line()
        self.put([Content.styled(text, "bold yellow")], text)


class CapacityDashboard(DashboardApp):
    def __init__(self, *args: Any, status: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = status

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield widget
            if isinstance(widget, RunHeader):
                yield CapacityLine(self.status, id="capacity")

    def _panes(self) -> tuple[PaneWidget, ...]:
        return (*super()._panes(), self.query_one(CapacityLine))

    def action_rate(self, direction: int) -> None:
        self._say("the capacity search sets the rate; q stops it")
