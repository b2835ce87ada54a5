"""Divergence where people read it: the dashboard's command table (a column only in a
replay), the summary, and the results folder written and read back."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

import numpy as np
from rich.console import Console

from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.results import read_results, summary_dict, write_results
from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.report.summary import summary
from smtpbench.tui.app import DashboardApp
from smtpbench.tui.widgets.commands import CommandTable
from tests.fake_engine import FakeEngine, synthetic_snapshot


def replay_snapshot():  # type: ignore[no-untyped-def]
    snapshot = synthetic_snapshot()
    divergence = np.zeros((2, STEP_COUNT), dtype=np.int64)
    divergence[:, Step.RCPT] = (400, 25)
    divergence[:, Step.MAIL] = (100, 0)
    info = dataclasses.replace(snapshot.info, mode="replay")
    return dataclasses.replace(snapshot, info=info, divergence=divergence)


def text(renderable: object, width: int = 160) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def table_text(snapshot) -> str:  # type: ignore[no-untyped-def]
    async def scenario() -> str:
        app = DashboardApp(FakeEngine(snapshot))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            pane = app.query_one(CommandTable)
            return "\n".join(pane.render_line(y).text for y in range(len(pane.lines)))

    return asyncio.run(scenario())


def test_the_command_table_has_a_divergence_column_only_in_a_replay() -> None:
    assert "div%" not in table_text(synthetic_snapshot())
    shown = table_text(replay_snapshot())
    assert "div%" in shown
    rcpt = next(line for line in shown.splitlines() if " RCPT " in line)
    assert "6.2%" in rcpt  # 25 of 400


def test_the_summary_shows_divergence_in_a_replay() -> None:
    assert "Divergence from the recording" not in text(summary(synthetic_snapshot()))
    shown = text(summary(replay_snapshot()))
    assert "Divergence from the recording" in shown
    assert any("RCPT" in line and "400" in line and "25" in line for line in shown.splitlines())


def test_divergence_in_the_results_folder_and_merged(tmp_path: Path) -> None:
    snapshot = replay_snapshot()
    write_results(tmp_path / "run", snapshot, "")
    back = read_results(tmp_path / "run")
    assert back.divergence is not None and np.array_equal(back.divergence, snapshot.divergence)
    assert summary_dict(back)["divergence"]["RCPT"] == {
        "compared": 400,
        "differed": 25,
        "share": 0.0625,
    }
    plain = synthetic_snapshot()
    write_results(tmp_path / "plain", plain, "")
    assert read_results(tmp_path / "plain").divergence is None
    assert "divergence" not in summary_dict(plain)
    merged = merge_snapshots([snapshot, snapshot])
    assert merged.divergence_of(Step.RCPT) == (800, 50)
