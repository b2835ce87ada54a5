"""The dashboard's s (save a snapshot now) when the results cannot be written: the run
goes on, and the note says what could not be written."""

from __future__ import annotations

import asyncio
from pathlib import Path

from smtpbench.metrics.results import write_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.tui.app import DashboardApp
from tests.fake_engine import FakeEngine


def test_s_on_a_folder_that_cannot_be_written_says_so_and_goes_on() -> None:
    def save(snapshot: Snapshot, final: bool) -> Path:
        folder = Path("/proc/no-results-here")
        write_results(folder, snapshot, "")
        return folder

    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine, save)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("s")
            assert app.note.startswith("snapshot not saved: /proc/no-results-here: cannot")
            await pilot.press("p")  # still steering the run
            assert engine.calls == [("pause", ())]

    asyncio.run(scenario())
