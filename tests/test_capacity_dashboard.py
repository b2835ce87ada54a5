"""The capacity search under the real dashboard, against the real engine process and an
embedded sink with a service capacity: each step shows under the header as the driver
moves the rate, the search ends the run, and its files join the run's results folder."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from smtpbench.capacity.dashboard import start_driver
from smtpbench.capacity.driver import Plan, Progress
from smtpbench.capacity.headless import complete
from smtpbench.capacity.processes import ProcessEngine
from smtpbench.capacity.search import Ramp, Search
from smtpbench.engine.embedded import EmbeddedSink
from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.run.dashboard import ResultsWriter
from smtpbench.run.prepare import run_info
from smtpbench.run.target import resolve_now
from smtpbench.scenario import default_scenario, scenario_to_toml, with_overrides
from smtpbench.thresholds import parse_threshold
from smtpbench.tui.capacity import CapacityDashboard, CapacityLine


async def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def test_dashboard_shows_each_step_of_a_search(tmp_path: Path) -> None:
    sink = EmbeddedSink.start(["--capacity", "100/s"])
    try:
        plan = Plan(
            Ramp(40, 40, 160),
            step_duration=2.5,
            settle=0.75,
            criteria=(parse_threshold("p99(DATA end) < 150ms"),),
        )
        scenario = with_overrides(default_scenario(), rate=40, duration=plan.longest, seed=5)
        address = resolve_now(sink.host, sink.port)
        info = run_info(scenario, f"embedded sink {address}", 5)
        engine = EngineProcess(EngineJob(scenario_to_toml(scenario), address, 5, info))
        progress = Progress(plan, Search(plan.ramp))
        writer = ResultsWriter(tmp_path, scenario)
        app = CapacityDashboard(engine, writer, status=progress.status)
        seen: list[str] = []

        def line() -> str:
            return str(app.query_one(CapacityLine).render_line(0).text).strip()

        async def watch() -> None:
            async with app.run_test(size=(130, 40)) as pilot:
                driver = start_driver(ProcessEngine(engine, 40), progress)
                deadline = time.monotonic() + 90
                while engine.final is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    text = line()
                    if text and (not seen or seen[-1] != text):
                        seen.append(text)
                await wait_for(lambda: app.results_folder is not None)
                await pilot.pause()
                seen.append(line())
                await asyncio.to_thread(driver.join, 10)

        engine.start()
        asyncio.run(watch())
    finally:
        engine.close()
        sink.stop()
    shown = "\n".join(seen)
    # Each step was on screen while it ran, with its rate, then the search's end.
    assert "capacity step 1 (at most 4): 40/s" in shown, shown
    assert "capacity step 2 (at most 4): 80/s" in shown, shown
    assert "capacity step 3 (at most 4): 120/s" in shown, shown
    assert "measuring" in shown and "settling" in shown
    assert seen[-1].startswith("capacity search done after"), seen[-1]
    # The sink serves 100 messages a second: 80/s holds and 120/s does not.
    assert (progress.search.held, progress.search.broke) == (80, 120)
    assert writer.outcome is not None
    outcome = complete(writer.outcome, progress)
    found = json.loads((outcome.run.folder / "capacity.json").read_text())
    assert found["limit"] == "server" and "p99(DATA end) < 150ms" in found["broken_by"]
    assert dataclasses.asdict(outcome.conclusion)["held"] == 80
