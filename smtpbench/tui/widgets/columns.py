"""Rows of cells in aligned columns, as lines of Textual content.

The dashboard's tables change every frame. Laying them out here, with each column as
wide as its widest cell, costs a fraction of a rich ``Table`` (which measures and pads
every cell as a renderable of its own), and a cheap frame leaves the CPU to the load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from textual.content import Content, Span

Cell = str | Content


@dataclass(frozen=True, slots=True)
class Column:
    header: str = ""
    right: bool = False  # numbers line up on the right
    style: str = ""  # the style of plain-string cells
    stretch: int = 0  # share of the width left over; stretching columns give way first


def cell(value: Cell, style: str = "") -> Content:
    return value if isinstance(value, Content) else Content.styled(value, style)


def _measure(value: Cell) -> int:
    return value.cell_length if isinstance(value, Content) else cell_len(value)


def column_widths(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int, gap: int
) -> list[int]:
    """Each column as wide as its widest cell; the columns that stretch then share what
    the others leave of ``width`` by their shares: room to spare widens them, and when
    room is short, a column that needs less than its share keeps what it needs and the
    rest goes to the others. A width of 0 (a pane not laid out yet) leaves every column
    at its natural width."""
    widths = [max((_measure(row[i]) for row in rows), default=0) for i in range(len(columns))]
    stretching = [i for i, column in enumerate(columns) if column.stretch]
    if width <= 0 or not stretching:
        return widths
    room = width - gap * len(columns) - sum(w for i, w in enumerate(widths) if i not in stretching)
    natural = sum(widths[i] for i in stretching)
    if natural <= room:
        room -= natural
        shares = sum(columns[i].stretch for i in stretching)
        for i in stretching:
            widths[i] += room * columns[i].stretch // shares
        left = width - gap * len(columns) - sum(widths)
        for n in range(left):  # what rounding left over, a cell each from the left
            widths[stretching[n % len(stretching)]] += 1
        return widths
    short = list(stretching)
    while short:  # give each its share; whoever needs less keeps its own width
        shares = sum(columns[i].stretch for i in short)
        content = [i for i in short if widths[i] <= room * columns[i].stretch // shares]
        if not content:
            for i in short:
                widths[i] = max(1, room * columns[i].stretch // shares)
            break
        for i in content:
            room -= widths[i]
            short.remove(i)
    return widths


def aligned(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int = 0,
    *,
    gap: int = 1,
    header_style: str = "bold",
) -> list[Content]:
    """One line per row (a header line first when a column has a header), each cell
    preceded by ``gap`` spaces and padded to its column, too-long cells cut with an
    ellipsis. Lines are built as plain text and spans, the cheapest content there is."""
    table: list[Sequence[Cell]] = list(rows)
    if any(column.header for column in columns):
        table.insert(0, [Content.styled(column.header, header_style) for column in columns])
    widths = column_widths(columns, table, width, gap)
    space = " " * gap
    lines = []
    for row in table:
        text: list[str] = []
        spans: list[Span] = []
        at = 0
        for value, column, size in zip(row, columns, widths, strict=True):
            if isinstance(value, str):
                plain, styles = value, ()
                style = column.style
            else:
                plain, styles, style = value.plain, value.spans, ""
            length = cell_len(plain)
            if length > size:  # rare: cut with an ellipsis, keeping the styles that fit
                cut = cell(value, column.style).truncate(size, ellipsis=True)
                plain, styles, style, length = cut.plain, cut.spans, "", cut.cell_length
            fill = " " * (size - length)
            start = at + gap + (len(fill) if column.right else 0)
            text += [space, fill, plain] if column.right else [space, plain, fill]
            if style:
                spans.append(Span(start, start + len(plain), style))
            spans += [Span(start + s.start, start + s.end, s.style) for s in styles]
            at += gap + size
        lines.append(Content("".join(text), spans))
    return lines
