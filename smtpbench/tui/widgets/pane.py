"""A pane of the dashboard redrawn from every snapshot, at the least cost to the CPU
the load runs on."""

from __future__ import annotations

from collections.abc import Hashable

from textual.visual import VisualType
from textual.widgets import Static


class Pane(Static):
    """Redrawing a pane repaints it alone. The screen is laid out again only when the
    pane's shape changes (its number of lines, or anything else its height depends
    on): laying out measures every pane with an automatic height by rendering it,
    which would double the cost of each frame and add a pass over the whole screen.
    A pane whose content is the same as last time is not drawn at all."""

    # A line too long for the pane is cut with an ellipsis, never wrapped: the pane's
    # height is its number of lines.
    DEFAULT_CSS = """
    Pane {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    _shape: Hashable = None
    _content_key: Hashable = None

    def put(self, content: VisualType, shape: Hashable, key: Hashable = None) -> None:
        """Shows ``content``; ``shape`` decides the pane's height (given its size),
        ``key``, when given, stands for the whole content: the same key, no redraw."""
        shape = (shape, self.size)
        if key is not None and (shape, key) == (self._shape, self._content_key):
            return
        self.update(content, layout=shape != self._shape)
        self._shape = shape
        self._content_key = key
