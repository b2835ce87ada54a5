"""Every key of the dashboard, pressed with Textual's Pilot, against a stand-in engine
that records what reaches it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from smtpbench.metrics.results import read_results, write_results
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.tui.app import DashboardApp
from smtpbench.tui.screens import HelpScreen, SummaryScreen, TranscriptScreen
from smtpbench.tui.view import WINDOWS
from smtpbench.tui.widgets.pane import Pane
from tests.fake_engine import FakeEngine


class Saver:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.saved: list[tuple[Path, bool]] = []

    def __call__(self, snapshot: Snapshot, final: bool) -> Path:
        folder = self.base / f"{len(self.saved)}-{'final' if final else 'snapshot'}"
        write_results(folder, snapshot, "")
        self.saved.append((folder, final))
        return folder


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))


def shown(pane: Pane) -> str:
    """What a pane draws, line by line, as plain text."""
    return "\n".join(pane.render_line(y).text for y in range(len(pane.lines)))


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=max(40, widget.size.width), record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def test_pause_and_resume_reach_the_engine() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("p")
            assert engine.calls == [("pause", ())]
            assert "paused" in app.note
            await pilot.press("p")
            assert engine.calls[-1] == ("resume", ())

    run(scenario)


def test_plus_and_minus_change_the_rate_by_ten_percent() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("plus")
            await pilot.press("minus")
        assert engine.calls[0][0] == "scale_rate"
        assert engine.calls[0][1][0] == pytest.approx(1.10)
        assert engine.calls[1][1][0] == pytest.approx(1 / 1.10)

    run(scenario)


def test_focus_moves_with_arrows_and_number_keys() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            assert app.focus_step is Step.DATA_END
            await pilot.press("down")
            assert app.focus_step is Step.QUIT
            await pilot.press("down")  # wraps around to the first command
            assert app.focus_step is Step.CONNECT
            await pilot.press("up")
            assert app.focus_step is Step.QUIT
            await pilot.press("5")
            assert app.focus_step is Step.RCPT
            await pilot.pause()
            assert ">RCPT<" in shown(app.query_one("#commands", Pane))

    run(scenario)


def test_brackets_change_the_chart_window() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            start = app.window
            await pilot.press("right_square_bracket")
            assert app.window == WINDOWS[WINDOWS.index(start) + 1]
            for _ in range(len(WINDOWS) + 1):
                await pilot.press("left_square_bracket")
            assert app.window == WINDOWS[0]

    run(scenario)


def test_s_saves_a_results_snapshot_now(tmp_path: Path) -> None:
    async def scenario() -> None:
        saver = Saver(tmp_path)
        app = DashboardApp(FakeEngine(), saver)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("s")
        [(folder, final)] = saver.saved
        assert not final
        assert read_results(folder).counters.started == 18750
        assert str(folder) in app.note

    run(scenario)


def test_q_stops_then_results_then_q_leaves(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        saver = Saver(tmp_path)
        app = DashboardApp(engine, saver)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("q")
            assert engine.calls == [("interrupt", ())]
            assert app.is_running  # still showing, draining
            engine.finish(RunState.INTERRUPTED)
            await pilot.pause(0.5)  # the next pull sees the final snapshot
            [(folder, final)] = saver.saved
            assert final and "results written to" in app.note
            assert read_results(folder).state is RunState.INTERRUPTED
            await pilot.press("q")
        assert app.return_value == 0
        assert not app.is_running

    run(scenario)


def test_second_q_while_draining_cuts_sessions_short() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("q")
            await pilot.press("q")
        assert engine.calls == [("interrupt", ()), ("abort", ())]

    run(scenario)


def test_help_transcripts_and_summary_screens() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()  # the first draw comes after layout
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.press("t")
            assert isinstance(app.screen, TranscriptScreen)
            text = text_of(app.screen.query_one(Static))
            assert "RCPT TO:<bob@example.org>" in text and "550 5.1.1 User unknown" in text
            await pilot.press("escape")
            await pilot.press("r")
            assert isinstance(app.screen, SummaryScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen | TranscriptScreen | SummaryScreen)

    run(scenario)


def test_small_terminal_folds_the_failures_pane_away() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(80, 24)):
            assert app.screen.has_class("compact")
            assert not app.query_one("#failures").display
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(160, 48)):
            assert not app.screen.has_class("compact")
            assert app.query_one("#failures").display

    run(scenario)


def test_thresholds_show_and_abort_on_fail_stops_the_run() -> None:
    from smtpbench.thresholds import ThresholdSettings, parse_thresholds

    settings = ThresholdSettings(
        parse_thresholds(["p99(DATA end) < 10ms", "dropped == 0"]),
        abort_on_fail=True,
        abort_grace=5.0,
    )

    async def scenario() -> None:
        engine = FakeEngine()  # DATA end p99 is about 255 ms, 72 s into the run
        app = DashboardApp(engine, thresholds=settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert engine.calls == [("interrupt", ())]
            assert app.guard.aborted_by is not None
            assert str(app.guard.aborted_by.threshold) == "p99(DATA end) < 10ms"
            assert "threshold failed" in app.note
            counters = shown(app.query_one("#counters", Pane))
            assert "1 ok" in counters and "1 failing" in counters

    run(scenario)


def test_thresholds_on_transit_wait_for_the_drain_and_never_fail_the_live_run() -> None:
    from smtpbench.thresholds import ThresholdSettings, parse_thresholds

    settings = ThresholdSettings(
        parse_thresholds(["dropped == 0", "not_arrived == 0", "p99(transit) < 5s"]),
        abort_on_fail=True,
        abort_grace=5.0,
    )

    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine, thresholds=settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert engine.calls == [] and app.guard.aborted_by is None
            counters = " ".join(shown(app.query_one("#counters", Pane)).split())
            assert "thresholds 1 ok, 2 on transit after the drain" in counters
            assert "failing" not in counters

    run(scenario)
