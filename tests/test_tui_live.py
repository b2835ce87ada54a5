"""The real dashboard against the real engine process and the embedded sink, for a
few seconds: keys reach the engine, pause holds new sessions, q writes results."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpbench.engine.embedded import EmbeddedSink
from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.engine.transport import Address
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import RunState
from smtpbench.run.dashboard import ResultsWriter
from smtpbench.run.prepare import run_info
from smtpbench.scenario import default_scenario, scenario_to_toml, with_overrides
from smtpbench.tui.app import DashboardApp


async def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def sink() -> EmbeddedSink:
    sink = EmbeddedSink.start()
    yield sink
    sink.stop()


def test_dashboard_steers_a_real_run(sink: EmbeddedSink, tmp_path: Path) -> None:
    scenario = with_overrides(default_scenario(), rate=50, duration=60, seed=3)
    address = Address(sink.host, sink.port, socket.AF_INET, (sink.host, sink.port))
    info = run_info(scenario, f"embedded sink {address}", 3)
    engine = EngineProcess(EngineJob(scenario_to_toml(scenario), address, 3, info))
    writer = ResultsWriter(tmp_path, scenario)
    app = DashboardApp(engine, writer)

    def started() -> int:
        snapshot = engine.snapshot()
        return snapshot.counters.started if snapshot else 0

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: started() > 10)
            await pilot.press("plus", "plus")
            await wait_for(lambda: (engine.snapshot().target_rate or 0) > 60)
            assert engine.snapshot().target_rate == pytest.approx(50 * 1.1 * 1.1)

            await pilot.press("p")
            await wait_for(lambda: engine.snapshot().state is RunState.PAUSED)
            await asyncio.sleep(0.6)
            held = started()
            await asyncio.sleep(1.0)
            assert started() == held  # nothing new starts while paused

            await pilot.press("p")
            await wait_for(lambda: started() > held)
            await pilot.press("q")
            await wait_for(lambda: writer.final_folder is not None)
            assert "results written to" in app.note
            await pilot.press("q")

    engine.start()
    try:
        asyncio.run(drive())
    finally:
        engine.close()
    assert app.return_value == 0
    assert writer.final_folder is not None
    snapshot = read_results(writer.final_folder)
    assert snapshot.state is RunState.INTERRUPTED
    assert snapshot.counters.started > 10
    assert snapshot.counters.messages_accepted == snapshot.counters.started
    assert 'name = "default"' in (writer.final_folder / "scenario.toml").read_text()
