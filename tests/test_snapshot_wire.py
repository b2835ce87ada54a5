"""Snapshots packed for the pipe from an engine process come back equal."""

from __future__ import annotations

import pickle

import numpy as np

from smtpbench.engine.snapshot_wire import pack, unpack
from tests.fake_engine import synthetic_snapshot


def test_packed_snapshot_round_trips_and_is_smaller() -> None:
    snapshot = synthetic_snapshot(seconds=20)
    packed = pickle.dumps(pack(snapshot))
    back = unpack(pickle.loads(packed))
    assert len(packed) < len(pickle.dumps(snapshot)) / 2
    assert np.array_equal(back.latency.counts, snapshot.latency.counts)
    assert np.array_equal(back.latency.minimum, snapshot.latency.minimum)
    assert np.array_equal(back.replies, snapshot.replies)
    assert back.counters == snapshot.counters
    assert back.failures == snapshot.failures
    np.testing.assert_array_equal(back.percentiles(), snapshot.percentiles())


def test_anything_else_passes_through() -> None:
    assert unpack(None) is None
