"""Merging runs: two recorders' worth of samples merged equal one recorder that saw them
all; per-interval counts stay bounded; `smtpbench merge` on two real runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.metrics.histogram import BUCKETS
from smtpbench.metrics.intervals import IntervalsBuilder
from smtpbench.metrics.kinds import LATENCY_ROWS, MAX_REPLY_CODE, ErrorClass
from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.results import read_results, write_results
from smtpbench.metrics.snapshot import RunInfo, RunState, Snapshot
from smtpbench.protocol.steps import STEP_COUNT, Step
from tests.runs import run_against, scenario_for
from tests.test_cli import smtpbench

INFO = RunInfo("split", "127.0.0.1:2525", "10/s for 3s", "rate", 3.0, None, 1, "2026-01-01", "t")


def _feed(recorders: list[Recorder], rng: np.random.Generator, interval: int) -> None:
    """One interval of made-up traffic, each event given to one of the first two recorders
    and always to the third (the combined one)."""
    a, b, combined = recorders
    for _ in range(400):
        side = a if rng.random() < 0.4 else b
        row = int(rng.integers(0, LATENCY_ROWS))
        seconds = float(rng.lognormal(np.log(0.002 * (1 + interval)), 1.0))
        code = int(rng.choice([220, 250, 354, 421, 451, 550]))
        step = int(rng.integers(0, STEP_COUNT))
        for r in (side, combined):
            r.latency(row, seconds)
            r.reply(step, code)
            r.started += 1
            r.completed += 1
            r.messages_accepted += 1
            if code >= 400:
                r.error(ErrorClass.REPLY, step)
                r.failed += 1


def _run_recorders(seed: int) -> tuple[Snapshot, Snapshot, Snapshot]:
    rng = np.random.default_rng(seed)
    recorders = [Recorder(INFO) for _ in range(3)]
    for r in recorders:
        r.state = RunState.RUNNING
        r.target_rate = 5.0
    for interval in range(3):
        _feed(recorders, rng, interval)
        for r in recorders:
            r.flush(interval + 1.0)
    snapshots = []
    for r in recorders:
        r.state = RunState.DONE
        snapshots.append(r.snapshot(3.0))
    return snapshots[0], snapshots[1], snapshots[2]


def test_merging_two_recorders_equals_one_that_saw_every_sample() -> None:
    a, b, combined = _run_recorders(7)
    merged = merge_snapshots([a, b])
    assert merged.counters == dataclasses.replace(combined.counters)
    assert np.array_equal(merged.latency.counts, combined.latency.counts)
    assert np.allclose(merged.latency.total, combined.latency.total)
    assert np.array_equal(merged.latency.minimum, combined.latency.minimum)
    assert np.array_equal(merged.latency.maximum, combined.latency.maximum)
    assert np.array_equal(merged.percentiles(), combined.percentiles(), equal_nan=True)
    assert np.array_equal(merged.replies, combined.replies)
    assert np.array_equal(merged.errors, combined.errors)
    series, expected = merged.series, combined.series
    assert np.array_equal(series.time, expected.time)
    assert np.array_equal(series.counters, expected.counters)
    assert np.array_equal(series.count, expected.count)
    assert np.array_equal(series.p50, expected.p50, equal_nan=True)
    assert np.array_equal(series.p99, expected.p99, equal_nan=True)
    assert np.array_equal(series.target_rate, [10.0, 10.0, 10.0])  # two runs at 5/s each
    assert merged.intervals is not None and combined.intervals is not None
    for i in range(3):
        assert np.array_equal(
            merged.intervals.latency_counts(i), combined.intervals.latency_counts(i)
        )
        assert np.array_equal(merged.intervals.reply_counts(i), combined.intervals.reply_counts(i))
    assert merged.info.load.startswith("2 runs merged")


def test_a_merge_survives_the_results_folder(tmp_path: Path) -> None:
    a, b, combined = _run_recorders(11)
    for name, snapshot in (("a", a), ("b", b)):
        write_results(tmp_path / name, snapshot, 'name = "split"\n')
    result = smtpbench(
        "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == exitcodes.OK, result.stderr
    merged = read_results(tmp_path / "m")
    assert np.array_equal(merged.latency.counts, combined.latency.counts)
    assert np.array_equal(merged.series.p99, combined.series.p99, equal_nan=True)
    assert merged.counters == combined.counters
    # An existing folder is never written over.
    again = smtpbench(
        "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"),
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == exitcodes.BAD_CONFIGURATION
    assert "not an empty folder" in again.stderr


def test_interval_counts_stay_within_their_budget_and_add_up() -> None:
    rng = np.random.default_rng(3)
    builder = IntervalsBuilder(budget=200)
    total_latency = np.zeros((LATENCY_ROWS, BUCKETS), dtype=np.int64)
    total_replies = np.zeros(STEP_COUNT * MAX_REPLY_CODE, dtype=np.int64)
    for second in range(1, 41):
        latency = np.zeros((LATENCY_ROWS, BUCKETS), dtype=np.int64)
        np.add.at(latency, (rng.integers(0, 3, 60), rng.integers(1000, 1020, 60)), 1)
        replies = np.zeros(STEP_COUNT * MAX_REPLY_CODE, dtype=np.int64)
        replies[Step.RCPT * MAX_REPLY_CODE + 250] = second
        builder.append(float(second), latency, replies)
        total_latency += latency
        total_replies += replies
    intervals = builder.freeze()
    assert builder.span > 1  # paired at least once
    assert len(intervals) < 40
    assert sum(len(index) for index, _ in intervals.latency) <= 200 + 60
    assert intervals.end[-1] == 40.0 and np.all(np.diff(intervals.end) > 0)
    added = sum(intervals.latency_counts(i) for i in range(len(intervals)))
    assert np.array_equal(added, total_latency)
    table = intervals.reply_table()
    assert table[:, 250].sum() == total_replies.sum() == sum(range(1, 41))


async def test_merge_two_real_runs_that_shared_one_sink(tmp_path: Path) -> None:
    async with embedded_sink() as (_, port):
        results: list[Snapshot] = []

        async def one(rate: float, seed: int) -> None:
            results.append(await run_against(scenario_for(port, rate=rate, duration=2), seed=seed))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, 30.0, 1)
                nursery.start_soon(one, 20.0, 2)
    folders = []
    for k, snapshot in enumerate(results):
        folders.append(tmp_path / f"run{k}")
        write_results(folders[-1], snapshot, 'name = "default"\n')
    out = tmp_path / "merged"
    done = await trio.to_thread.run_sync(
        lambda: smtpbench("merge", *map(str, folders), "--out", str(out), cwd=tmp_path)
    )
    assert done.returncode == exitcodes.OK, done.stderr
    assert "100 sessions" in done.stdout
    merged = read_results(out)
    assert merged.counters.started == merged.counters.messages_accepted == 100
    assert merged.target_rate == 50.0
    counts = results[0].latency.counts + results[1].latency.counts
    assert np.array_equal(merged.latency.counts, counts)
    step = Step.DATA_END
    together = results[0].histogram(step) + results[1].histogram(step)
    assert merged.histogram(step).percentile(99) == together.percentile(99)
    assert int(merged.series.column("started").sum()) == 100
    assert merged.intervals is not None
    assert merged.intervals.reply_table()[:, 250].sum() == int(merged.replies[:, 250].sum())
