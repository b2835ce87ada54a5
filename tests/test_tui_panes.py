"""The dashboard's panes: columns laid out by hand, and a pane that grows when its
content does (redrawing does not lay the screen out unless a pane's height changes)."""

from __future__ import annotations

import asyncio
import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from textual.content import Content

from smtpbench.metrics.snapshot import FailureRecord, TranscriptLine
from smtpbench.tui.app import DashboardApp
from smtpbench.tui.widgets.columns import Column, aligned, column_widths
from smtpbench.tui.widgets.failures import short_transcript
from smtpbench.tui.widgets.pane import Pane
from tests.fake_engine import FakeEngine, synthetic_snapshot

words = st.text(alphabet="abcdefghij0123456789 .:", min_size=0, max_size=30)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Column], list[list[str]]]:
    n = draw(st.integers(1, 6))
    columns = [
        Column(right=draw(st.booleans()), stretch=draw(st.sampled_from([0, 0, 1, 2])))
        for _ in range(n)
    ]
    rows = draw(st.lists(st.lists(words, min_size=n, max_size=n), min_size=1, max_size=8))
    return columns, rows


@given(tables(), st.integers(0, 160))
def test_every_line_is_as_wide_as_the_columns(table, width) -> None:
    columns, rows = table
    lines = aligned(columns, rows, width)
    widths = column_widths(columns, [[Content(c) for c in row] for row in rows], width, 1)
    assert len(lines) == len(rows)
    assert {line.cell_length for line in lines} == {sum(widths) + len(columns)}


@given(tables(), st.integers(0, 160))
def test_columns_fill_the_width_when_there_is_room(table, width) -> None:
    columns, rows = table
    natural = sum(max(len(row[i]) for row in rows) for i in range(len(columns)))
    lines = aligned(columns, rows, width)
    if width and natural + len(columns) <= width and any(c.stretch for c in columns):
        assert all(line.cell_length == width for line in lines)
    if not width or natural + len(columns) <= width:
        # Nothing cut: every cell is there, padded on the side its column asks.
        for row, line in zip(rows, lines, strict=True):
            position = 0
            widths = column_widths(columns, [[Content(c) for c in r] for r in rows], width, 1)
            for value, column, size in zip(row, columns, widths, strict=True):
                cell = line.plain[position + 1 : position + 1 + size]
                assert cell == (value.rjust(size) if column.right else value.ljust(size))
                position += 1 + size


def test_a_short_pane_cuts_the_stretching_columns_first() -> None:
    columns = [Column(), Column(stretch=2), Column(stretch=1)]
    rows = [["00:00:07", "x" * 200, "y" * 60]]
    (line,) = aligned(columns, rows, 110)
    assert line.cell_length == 110
    assert line.plain.startswith(" 00:00:07 xxx")
    assert "…" in line.plain
    # The second column gets two shares of the room left, the third one.
    assert column_widths(columns, [[Content(c) for c in rows[0]]], 110, 1) == [8, 66, 33]
    # A column needing less than its share keeps its width, the other takes the rest.
    rows = [["00:00:07", "x" * 200, "y" * 10]]
    assert column_widths(columns, [[Content(c) for c in rows[0]]], 110, 1) == [8, 89, 10]


def test_short_transcript_names_the_banner_and_the_content() -> None:
    failure = FailureRecord(
        time=1.0,
        session=7,
        step="DATA end",
        error="unexpected reply",
        detail="451 4.3.0 try later",
        transcript=(
            TranscriptLine("(connect)", "220 mx ESMTP"),
            TranscriptLine("EHLO client", "250 mx"),
            TranscriptLine("(message content, 2048 bytes)", "451 4.3.0 try later"),
            TranscriptLine("QUIT", ""),
        ),
    )
    assert short_transcript(failure) == "banner 220, EHLO 250, content 451, QUIT no reply"


def test_short_transcript_shows_where_lines_were_left_out_not_a_command() -> None:
    left_out = TranscriptLine.left_out(4_000)
    assert left_out.is_left_out and left_out.sent == "(4,000 lines of this session left out)"
    assert not TranscriptLine("(message content, 2048 bytes)", "").is_left_out
    failure = FailureRecord(
        time=1.0,
        session=7,
        step="MAIL",
        error="closed by server",
        detail="server closed the connection awaiting MAIL",
        transcript=(
            TranscriptLine("(connect)", "220 mx ESMTP"),
            left_out,
            TranscriptLine("MAIL FROM:<a@x.test>", ""),
        ),
    )
    assert short_transcript(failure) == "banner 220, …, MAIL no reply"


def failure(number: int) -> FailureRecord:
    return FailureRecord(
        time=float(number),
        session=1000 + number,
        step="RCPT",
        error="unexpected reply",
        detail=f"550 5.1.1 user{number} unknown",
        transcript=(TranscriptLine(f"RCPT TO:<user{number}@example.org>", "550 5.1.1"),),
    )


def test_a_pane_grows_when_its_content_does() -> None:
    async def scenario() -> None:
        snapshot = synthetic_snapshot(seconds=30)
        engine = FakeEngine(dataclasses.replace(snapshot, failures=(failure(1),)))
        app = DashboardApp(engine)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.pull()
            await pilot.pause()
            pane = app.query_one("#failures", Pane)
            assert pane.content_size.height == 1
            more = tuple(failure(n) for n in range(1, 6))
            engine._snapshot = dataclasses.replace(snapshot, failures=more)
            app.pull()
            await pilot.pause()
            assert pane.content_size.height == 5
            shown = "\n".join(pane.render_line(y).text for y in range(5))
            for n in range(1, 6):
                assert f"#{1000 + n}" in shown

    asyncio.run(scenario())
