"""One line under the header with ``run --through``: transit through the server so far."""

from __future__ import annotations

from collections.abc import Callable

from textual.content import Content

from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane


class TransitLine(Pane):
    """Draws what ``line()`` says (arrived of accepted, transit p50 and p99, what waits)."""

    DEFAULT_CSS = """
    TransitLine {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, line: Callable[[], str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.line = line

    def show(self, view: View) -> None:
        text = self.line()
        self.put([Content.assemble(("Through ", "bold"), text)], text)
