"""The workers' snapshots merged as they arrive equal one recorder fed every sample:
counters, histograms, replies, and each second's p50 and p99, live and final, also
after a long run paired its intervals."""

from __future__ import annotations

import numpy as np
import pytest

from smtpbench.metrics.kinds import LATENCY_ROWS, MESSAGE_LATENCY
from smtpbench.metrics.live_merge import WorkerMerge
from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from tests.fake_engine import INFO

SECONDS = 12


def feed(recorder: Recorder, rng: np.random.Generator, scale: float) -> list[tuple]:
    """One second of random samples into ``recorder``; returns them to replay elsewhere."""
    calls: list[tuple] = []
    for _ in range(int(rng.integers(0, 60))):
        row = int(rng.choice([Step.CONNECT, Step.RCPT, Step.DATA_END, MESSAGE_LATENCY]))
        seconds = float(rng.lognormal(np.log(0.002 * scale), 0.8))
        calls.append(("latency", row, seconds))
        code = 250 if rng.random() < 0.9 else 451
        calls.append(("reply", int(Step.RCPT), code))
    for call in calls:
        getattr(recorder, call[0])(*call[1:])
    started = len(calls) // 2
    recorder.started += started
    recorder.completed += started
    recorder.messages_accepted += started
    return calls


def replay(calls: list[tuple], recorder: Recorder) -> None:
    for call in calls:
        getattr(recorder, call[0])(*call[1:])
    recorder.started += len(calls) // 2
    recorder.completed += len(calls) // 2
    recorder.messages_accepted += len(calls) // 2


def workers_and_whole(budget: int | None = None) -> tuple[list[Recorder], Recorder]:
    workers = [Recorder(INFO, live_intervals=True) for _ in range(3)]
    whole = Recorder(INFO)
    for recorder in (*workers, whole):
        recorder.state = RunState.RUNNING
        if budget is not None:
            recorder._intervals.budget = budget
    return workers, whole


def run(budget: int | None = None) -> tuple[WorkerMerge, list[Recorder], Recorder, list[int]]:
    """Three workers over SECONDS seconds; worker k reports every k+1 seconds, so the
    merge always has seconds waiting for someone. Returns how many seconds the live
    merge showed after each second."""
    rng = np.random.default_rng(11)
    workers, whole = workers_and_whole(budget)
    merge = WorkerMerge(INFO, 3, **({"budget": budget} if budget is not None else {}))
    shown = []
    for second in range(1, SECONDS + 1):
        for k, recorder in enumerate(workers):
            replay(feed(recorder, rng, scale=k + 1), whole)
            recorder.flush(float(second))
        whole.flush(float(second))
        for k, recorder in enumerate(workers):
            if second % (k + 1) == 0:
                merge.add(k, recorder.snapshot(second), recorder.take_intervals(), final=False)
        live = merge.snapshot()
        assert live is not None
        shown.append(len(live.series))
        # Every second shown has its exact percentiles.
        n = len(live.series)
        np.testing.assert_array_equal(live.series.p50, whole._series.freeze().p50[:n])
        np.testing.assert_array_equal(live.series.p99, whole._series.freeze().p99[:n])
    for k, recorder in enumerate(workers):
        recorder.state = RunState.DONE
        merge.add(k, recorder.snapshot(SECONDS), recorder.take_intervals(), final=True)
    whole.state = RunState.DONE
    return merge, workers, whole, shown


def assert_same_run(merged: Snapshot, whole: Snapshot) -> None:
    assert merged.counters == whole.counters
    np.testing.assert_array_equal(merged.latency.counts, whole.latency.counts)
    np.testing.assert_allclose(merged.latency.total, whole.latency.total)
    np.testing.assert_array_equal(merged.replies, whole.replies)
    np.testing.assert_array_equal(merged.series.counters, whole.series.counters)
    np.testing.assert_array_equal(merged.series.count, whole.series.count)
    np.testing.assert_array_equal(merged.series.p50, whole.series.p50)
    np.testing.assert_array_equal(merged.series.p99, whole.series.p99)
    assert merged.intervals is not None and whole.intervals is not None
    np.testing.assert_array_equal(merged.intervals.end, whole.intervals.end)
    for mine, theirs in zip(
        merged.intervals.to_arrays().items(), whole.intervals.to_arrays().items(), strict=True
    ):
        assert mine[0] == theirs[0]
        np.testing.assert_array_equal(mine[1], theirs[1])


def test_merged_as_they_come_equals_one_recorder() -> None:
    merge, workers, whole, shown = run()
    final = merge.final()
    assert final is not None and final.state is RunState.DONE
    assert final.info == INFO
    assert_same_run(final, whole.snapshot(SECONDS))
    # The live series shows the seconds every worker has reported (they report every
    # one, two and three seconds).
    assert shown == [0, 0, 2, 3, 3, 6, 6, 6, 8, 9, 9, 12]
    # And it is what merging the workers' final snapshots gives.
    parts = [w.snapshot(SECONDS) for w in workers]
    assert_same_run(final, merge_snapshots(parts))


def test_paired_intervals_still_give_exact_seconds() -> None:
    # A budget small enough that every recorder pairs its intervals several times over.
    merge, workers, whole, _ = run(budget=200)
    whole_snapshot = whole.snapshot(SECONDS)
    assert whole_snapshot.intervals is not None
    assert len(whole_snapshot.intervals) < SECONDS  # paired
    final = merge.final()
    assert final is not None
    assert_same_run(final, whole_snapshot)
    assert not np.isnan(final.series.p99[:, Step.RCPT]).any()
    # Merging the workers' paired final snapshots alone cannot line seconds up.
    offline = merge_snapshots([w.snapshot(SECONDS) for w in workers])
    assert offline.intervals is None
    assert np.isnan(offline.series.p99).all()


def test_a_lost_worker_marks_the_run_interrupted() -> None:
    workers, _ = workers_and_whole()
    merge = WorkerMerge(INFO, 2)
    rng = np.random.default_rng(2)
    for second in (1, 2):
        for recorder in workers[:2]:
            feed(recorder, rng, 1.0)
            recorder.flush(float(second))
    merge.add(0, workers[0].snapshot(2), workers[0].take_intervals(), final=False)
    assert merge.snapshot() is not None and len(merge.snapshot().series) == 0
    merge.lost(1)
    assert len(merge.snapshot().series) == 2  # nobody else to wait for
    assert merge.final() is None  # worker 0 still runs
    workers[0].state = RunState.DONE
    merge.add(0, workers[0].snapshot(2), workers[0].take_intervals(), final=True)
    final = merge.final()
    assert final is not None and final.state is RunState.INTERRUPTED
    assert final.counters == workers[0].snapshot(2).counters


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((RunState.RUNNING, RunState.DRAINING), RunState.RUNNING),
        ((RunState.PAUSED, RunState.PAUSED), RunState.PAUSED),
        ((RunState.DONE, RunState.DRAINING), RunState.DRAINING),
        ((RunState.DONE, RunState.INTERRUPTED), RunState.INTERRUPTED),
    ],
)
def test_the_live_state_is_the_busiest_workers(
    states: tuple[RunState, RunState], expected: RunState
) -> None:
    merge = WorkerMerge(INFO, 2)
    for k, state in enumerate(states):
        recorder = Recorder(INFO, live_intervals=True)
        recorder.state = state
        merge.add(k, recorder.snapshot(1.0), [], final=False)
    live = merge.snapshot()
    assert live is not None and live.state is expected


def test_each_part_of_the_rate_adds_up() -> None:
    merge = WorkerMerge(INFO, 2)
    for k in range(2):
        recorder = Recorder(INFO, live_intervals=True)
        recorder.target_rate = 25.0
        merge.add(k, recorder.snapshot(1.0), [], final=False)
    live = merge.snapshot()
    assert live is not None and live.target_rate == 50.0
    assert live.series.p50.shape == (0, LATENCY_ROWS)  # no second reported yet
