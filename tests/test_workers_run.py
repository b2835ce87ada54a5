"""Runs in several worker processes against the embedded sink: the merged results are
the sum of the workers' parts and start the single schedule's sessions; the live
merged series has its percentiles; the dashboard steers a group; the command's
--workers flag, with session records."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from smtpbench import exitcodes
from smtpbench.commands.flags import CORES
from smtpbench.commands.start import default_workers
from smtpbench.engine.embedded import EmbeddedSink
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineJob
from smtpbench.engine.transport import Address
from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.results import read_results
from smtpbench.metrics.sessions import SESSIONS_FILE, read_sessions
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.run.dashboard import ResultsWriter
from smtpbench.run.prepare import run_info
from smtpbench.scenario import Scenario, default_scenario, scenario_to_toml, with_overrides
from smtpbench.tui.app import DashboardApp
from tests.test_cli import ROOT, only_results_folder, smtpbench

LIMIT = 120.0  # seconds: a bound on every wait, never a measure


@pytest.fixture
def sink() -> Iterator[EmbeddedSink]:
    sink = EmbeddedSink.start()
    yield sink
    sink.stop()


def group_for(sink: EmbeddedSink, scenario: Scenario, workers: int) -> EngineGroup:
    address = Address(sink.host, sink.port, socket.AF_INET, (sink.host, sink.port))
    info = run_info(scenario, f"embedded sink {address}", 3)
    return EngineGroup(EngineJob(scenario_to_toml(scenario), address, 3, info), workers)


def test_the_merged_run_is_the_sum_of_its_parts(sink: EmbeddedSink) -> None:
    rate, duration = 40, 3
    scenario = with_overrides(default_scenario(), rate=rate, duration=duration, seed=3)
    group = group_for(sink, scenario, 2)
    group.start()
    live: list[tuple[Snapshot, Snapshot | None]] = []
    try:
        deadline = time.monotonic() + LIMIT
        while not group.done and time.monotonic() < deadline:
            snapshot = group.snapshot()
            if snapshot is not None:
                live.append((snapshot, group.engines[0].snapshot()))
            time.sleep(0.1)
        final = group.wait(LIMIT)
    finally:
        group.close()
    assert final is not None, group.error
    parts = group.parts()
    assert all(part is not None for part in parts)
    done = [part for part in parts if part is not None]

    # Exactly the single schedule's sessions: R * D, half each (interleaved arrivals).
    c = final.counters
    assert c.started == rate * duration
    assert [part.counters.started for part in done] == [rate * duration // 2] * 2
    assert c.messages_accepted == c.started and c.failed == 0
    assert final.state is RunState.DONE
    assert final.info == group.job.info
    assert final.target_rate == pytest.approx(rate)

    # Counters, histograms, replies and errors: the sum of the parts.
    for name in ("started", "completed", "messages_accepted", "bytes_sent"):
        assert getattr(c, name) == sum(getattr(part.counters, name) for part in done)
    np.testing.assert_array_equal(final.latency.counts, sum(p.latency.counts for p in done))
    np.testing.assert_array_equal(final.replies, sum(p.replies for p in done))
    np.testing.assert_array_equal(final.errors, sum(p.errors for p in done))
    assert final.replies[Step.DATA_END, 250] == c.messages_accepted

    # The series and intervals are what merging the parts' results folders gives.
    offline = merge_snapshots(done)
    np.testing.assert_array_equal(final.series.counters, offline.series.counters)
    np.testing.assert_array_equal(final.series.p50, offline.series.p50)
    np.testing.assert_array_equal(final.series.p99, offline.series.p99)
    assert final.intervals is not None and offline.intervals is not None
    np.testing.assert_array_equal(final.intervals.end, offline.intervals.end)
    total = sum(final.intervals.latency_counts(i) for i in range(len(final.intervals)))
    np.testing.assert_array_equal(total, final.latency.counts)

    # Live: each second shown has p50 and p99 wherever a worker's own series has them.
    assert any(len(snapshot.series) >= 2 for snapshot, _ in live)
    for snapshot, worker in live:
        series = snapshot.series
        has = series.count[:, Step.DATA_END] > 0
        assert np.isfinite(series.p50[has, Step.DATA_END]).all()
        assert np.isfinite(series.p99[has, Step.DATA_END]).all()
        if worker is not None:
            n = min(len(series), len(worker.series))
            mine = worker.series.count[:n, Step.DATA_END] > 0
            assert np.isfinite(series.p99[:n, Step.DATA_END][mine]).all()


async def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def test_the_dashboard_steers_a_group(sink: EmbeddedSink, tmp_path: Path) -> None:
    scenario = with_overrides(default_scenario(), rate=50, duration=60, seed=3)
    group = group_for(sink, scenario, 2)
    writer = ResultsWriter(tmp_path, scenario)
    app = DashboardApp(group, writer)

    def started() -> int:
        snapshot = group.snapshot()
        return snapshot.counters.started if snapshot else 0

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: started() > 10)
            await pilot.press("plus")
            # Each worker's part changes as its snapshot comes: wait for both.
            await wait_for(lambda: (group.snapshot().target_rate or 0) > 54.9)
            assert group.snapshot().target_rate == pytest.approx(50 * 1.1)

            await pilot.press("p")
            await wait_for(lambda: group.snapshot().state is RunState.PAUSED)
            await asyncio.sleep(0.6)
            held = started()
            await asyncio.sleep(1.0)
            assert started() == held  # nothing new starts in any worker

            await pilot.press("p")
            await wait_for(lambda: started() > held)
            await pilot.press("q")
            await wait_for(lambda: writer.final_folder is not None)
            await pilot.press("q")

    group.start()
    try:
        asyncio.run(drive())
    finally:
        group.close()
    assert app.return_value == 0
    assert writer.final_folder is not None
    snapshot = read_results(writer.final_folder)
    assert snapshot.state is RunState.INTERRUPTED
    assert snapshot.counters.started > 10
    assert snapshot.counters.messages_accepted == snapshot.counters.started
    assert snapshot.intervals is not None
    assert int(snapshot.intervals.reply_table()[:, 250].sum()) == int(
        snapshot.replies[:, 250].sum()
    )


def test_run_with_two_workers_and_session_records(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = smtpbench(
        *("run", "--workers", "2", "--rate", "20", "--duration", "3s"),
        *("--record-sessions", "--progress-interval", "1s", "--out", str(out)),
        cwd=ROOT,
    )
    assert run.returncode == exitcodes.OK, run.stderr
    assert "2 worker processes" in run.stdout
    assert any("achieved" in line for line in run.stdout.splitlines())
    folder = only_results_folder(out)
    assert list(out.iterdir()) == [folder]  # no worker's records left beside it
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counters"]["started"] == 60
    assert summary["counters"]["messages_accepted"] == 60
    assert summary["info"]["load"].startswith("20/s for 3s")
    records = read_sessions(folder / SESSIONS_FILE)
    assert sorted(r["session"] for r in records) == list(range(60))
    # Each worker's records follow one another; session numbers tell the workers apart.
    workers = [r["session"] % 2 for r in records]
    assert workers == sorted(workers)
    first = min(records, key=lambda r: r["session"])
    assert first["intended"] == 0.0
    second = next(r for r in records if r["session"] == 1)
    assert second["intended"] == pytest.approx(0.05)


def test_the_default_is_every_core_but_one_for_the_embedded_sink() -> None:
    assert default_workers(default_scenario()) == max(1, CORES - 1)
    target = with_overrides(default_scenario(), host="127.0.0.1", port=2525)
    assert default_workers(target) == CORES


def test_workers_flag_is_checked(tmp_path: Path) -> None:
    bad = smtpbench("run", "--workers", "0", "--out", str(tmp_path / "r"), cwd=ROOT)
    assert bad.returncode == exitcodes.BAD_CONFIGURATION
    assert "--workers" in bad.stderr
    assert not (tmp_path / "r").exists()
    # More workers than sessions in flight allowed: as many as there are slots.
    one = smtpbench(
        *("run", "--workers", "4", "--max-concurrency", "1", "--rate", "10"),
        *("--duration", "1s", "--out", str(tmp_path / "one")),
        cwd=ROOT,
    )
    assert one.returncode == exitcodes.OK, one.stderr
    assert "worker processes" not in one.stdout
    assert (
        json.loads((only_results_folder(tmp_path / "one") / "summary.json").read_text())[
            "counters"
        ]["started"]
        == 10
    )


def test_a_failing_threshold_stops_every_worker(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        'name = "slow"\n[load]\nrate = "20/s"\nduration = "60s"\n'
        '[sink]\ndelay = { DATA = "20ms" }\n'
        '[thresholds]\nchecks = ["p50(DATA) < 5ms"]\nabort_on_fail = true\nabort_grace = "1s"\n'
    )
    out = tmp_path / "results"
    run = smtpbench("run", str(scenario), "--workers", "2", "--out", str(out), cwd=ROOT)
    assert run.returncode == exitcodes.ABORTED_BY_THRESHOLD, run.stderr
    assert "threshold failed: p50(DATA) < 5ms" in run.stdout
    snapshot = read_results(only_results_folder(out))
    assert snapshot.state is RunState.INTERRUPTED
    assert 0 < snapshot.counters.started < 1200  # stopped long before the planned end
    assert snapshot.counters.in_flight == 0


def test_sigterm_stops_every_worker_and_keeps_the_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "smtpbench", "run", "--workers", "2"]
    command += ["--rate", "20", "--duration", "60s", "--progress-interval", "0.5s"]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:  # wait until sessions are flowing
        if "achieved" in process.stdout.readline():
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=LIMIT)
    assert process.returncode == exitcodes.INTERRUPTED, stderr
    assert "SIGTERM: stopping" in stdout
    snapshot = read_results(only_results_folder(out))
    assert snapshot.state is RunState.INTERRUPTED
    assert 0 < snapshot.counters.started < 1200
    assert snapshot.counters.messages_accepted == snapshot.counters.started


def test_a_replay_in_two_workers(tmp_path: Path) -> None:
    recording = ROOT / "scenarios" / "recordings" / "default-sink.jsonl"
    out = tmp_path / "results"
    run = smtpbench(
        *("replay", str(recording), "--workers", "2", "--speed", "10", "--headless"),
        *("--out", str(out)),
        cwd=ROOT,
    )
    assert run.returncode == exitcodes.OK, run.stderr
    assert "2 worker processes" in run.stdout
    summary = json.loads((only_results_folder(out) / "summary.json").read_text())
    sessions = summary["info"]["planned_sessions"]
    assert summary["info"]["mode"] == "replay"
    assert summary["counters"]["started"] == sessions > 2
    assert summary["divergence"]["MAIL"]["compared"] >= sessions
