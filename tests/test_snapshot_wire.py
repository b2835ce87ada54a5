"""Snapshots packed for the pipe from an engine process come back equal, the series
sent a row only once."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from smtpbench.engine.snapshot_wire import Packer, Unpacker
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunState, Snapshot
from tests.fake_engine import INFO, synthetic_snapshot


def assert_same(back: Snapshot, snapshot: Snapshot) -> None:
    assert np.array_equal(back.latency.counts, snapshot.latency.counts)
    assert np.array_equal(back.latency.total, snapshot.latency.total)
    assert np.array_equal(back.latency.minimum, snapshot.latency.minimum)
    assert np.array_equal(back.latency.maximum, snapshot.latency.maximum)
    assert np.array_equal(back.replies, snapshot.replies)
    assert np.array_equal(back.errors, snapshot.errors)
    assert back.counters == snapshot.counters
    assert back.failures == snapshot.failures
    for name in ("time", "counters", "target_rate", "p50", "p99", "count"):
        np.testing.assert_array_equal(getattr(back.series, name), getattr(snapshot.series, name))
    np.testing.assert_array_equal(back.percentiles(), snapshot.percentiles())


def test_packed_snapshot_round_trips_and_is_smaller() -> None:
    snapshot = synthetic_snapshot(seconds=20)
    packed = pickle.dumps(Packer().pack(snapshot))
    back = Unpacker().unpack(pickle.loads(packed))
    assert len(packed) < len(pickle.dumps(snapshot)) / 2
    assert_same(back, snapshot)


def test_live_snapshots_of_a_recorder_come_back_whole_one_after_another() -> None:
    """The engine packs live snapshots (the recorder's own arrays, its list of used
    buckets, each series row once); every one unpacks equal to a copied snapshot, and
    packing copies what it keeps, so later recording does not change a packed one."""
    rng = np.random.default_rng(3)
    recorder = Recorder(INFO)
    recorder.state = RunState.RUNNING
    packer, unpacker = Packer(), Unpacker()
    for second in range(1, 7):
        for quarter in range(4):
            for _ in range(200):
                recorder.latency(int(rng.integers(0, 8)), float(rng.lognormal(-7, 1.5)))
                recorder.reply(int(rng.integers(0, 8)), int(rng.choice([250, 451, 550])))
            now = second - 1 + (quarter + 1) / 4
            recorder.flush(now, series=quarter == 3)
            expected = recorder.snapshot(now)
            packed = packer.pack(recorder.snapshot(now, live=True), recorder.used_buckets())
            # Recorded after packing (the engine pickles in a thread, later): not in it.
            recorder.latency(0, 0.5)
            recorder.reply(1, 250)
            recorder.error(ErrorClass.TIMEOUT, 2)
            recorder.flush(now + 0.1, series=True)
            assert_same(unpacker.unpack(pickle.loads(pickle.dumps(packed))), expected)
    # Rows closed at each whole second and by each flush after packing but the last.
    assert len(expected.series) == 6 + 23


def test_series_rows_out_of_step_are_refused() -> None:
    snapshot = synthetic_snapshot(seconds=5)
    packer = Packer()
    packer.pack(snapshot)  # the receiver never gets this one
    with pytest.raises(ValueError, match="out of step"):
        Unpacker().unpack(packer.pack(synthetic_snapshot(seconds=6)))


def test_anything_else_passes_through() -> None:
    assert Unpacker().unpack(None) is None
