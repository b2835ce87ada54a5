"""A pane of the dashboard redrawn from every snapshot, at the least cost to the CPU
the load runs on."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from textual.content import Content
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget


class Pane(Widget):
    """Lines of styled text, drawn through Textual's line API.

    A pane is repainted alone when its lines change; the screen is laid out again only
    when their number does (laying out measures panes of automatic height, and would
    add a pass over the whole screen to every frame). Lines become strips once per
    change and width, and a line too long for the pane is cut with an ellipsis, never
    wrapped: the pane's height is its number of lines. Going through ``Static`` instead
    costs about three times as much per line, and the dashboard redraws several panes
    four times a second on the CPUs the load runs on. A pane whose ``key`` is the same
    as last time is not drawn at all."""

    DEFAULT_CSS = """
    Pane {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Content] = []
        self._key: Hashable = None
        self._strips: list[Strip] = []
        self._strips_for: tuple[object, ...] | None = None

    @property
    def lines(self) -> list[Content]:
        """What the pane shows."""
        return self._lines

    def put(self, lines: Sequence[Content], key: Hashable = None) -> None:
        """Shows ``lines``; ``key``, when given, stands for all of them: the same key as
        last time, no redraw."""
        if key is not None and key == self._key:
            return
        self._key = key
        layout = len(lines) != len(self._lines)
        self._lines = list(lines)
        self._strips_for = None
        self.refresh(layout=layout)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines)

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        made_for = (width, self.visual_style)
        if self._strips_for != made_for:
            self._strips = [self._strip(line, width) for line in self._lines]
            self._strips_for = made_for
        return self._strips[y] if y < len(self._strips) else Strip.blank(width)

    def _strip(self, line: Content, width: int) -> Strip:
        if width and line.cell_length > width:
            line = line.truncate(width, ellipsis=True)  # the ellipsis keeps the style
        return Strip(line.render_segments(self.visual_style))
