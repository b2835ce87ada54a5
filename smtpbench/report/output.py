"""Printing tables so that no number or name is cut short: on a terminal at its width
(rich wraps words), elsewhere (a pipe, a CI log) as wide as the tables need, whatever
COLUMNS says, since a log has no right edge."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table

WIDEST = 400  # columns the widest log line may take


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The width at which nothing in ``renderable`` is wrapped or cut."""
    options = console.options.update_width(WIDEST)
    return Measurement.get(console, options, renderable).maximum


def fold_cells(renderable: RenderableType) -> RenderableType:
    """Every table cell folds onto more lines where it does not fit, instead of ending
    in an ellipsis: ``100.0%``, never ``100.…``."""
    if isinstance(renderable, Group):
        for part in renderable.renderables:
            fold_cells(part)
    elif isinstance(renderable, Table):
        for column in renderable.columns:
            column.overflow = "fold"
        for column in renderable.columns:
            for cell in column.cells:
                fold_cells(cell)
    return renderable


def print_whole(console: Console, renderable: RenderableType) -> None:
    fold_cells(renderable)
    if console.is_terminal:
        console.print(renderable)
        return
    width = max(console.width, min(WIDEST, natural_width(console, renderable)))
    before = console.width
    console.width = width  # print(width=...) would not go past the console's own
    try:
        console.print(renderable, crop=False)
    finally:
        console.width = before
