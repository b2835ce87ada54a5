"""Arrival schedules as pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpbench.engine.schedule import Pacer, RateProfile


def due_times(pacer: Pacer, until: float) -> list[float]:
    times = []
    while (due := pacer.next_due()) < until:
        times.append(due)
    return times


def test_constant_rate_is_evenly_spaced_from_zero() -> None:
    times = due_times(Pacer(RateProfile.constant(500)), 10)
    assert len(times) == 5000
    assert times[:3] == [0.0, 0.002, 0.004]
    assert np.allclose(np.diff(times), 0.002)


def test_ramp_follows_the_integral_of_the_rate() -> None:
    # 0 -> 100/s over 10 s (500 sessions), then 100/s for 10 s (1000 sessions).
    profile = RateProfile(0.0, ((10.0, 100.0), (10.0, 100.0)))
    assert profile.cumulative(10) == pytest.approx(500)
    assert profile.cumulative(20) == pytest.approx(1500)
    assert profile.time_of(500) == pytest.approx(10)
    times = due_times(Pacer(profile), 20)
    assert len(times) == 1500
    # During the ramp, arrivals thicken: the second half of it holds 3/4 of them.
    assert sum(5 <= t < 10 for t in times) == pytest.approx(375, abs=1)


@given(
    start=st.floats(0, 1000),
    stages=st.lists(st.tuples(st.floats(0.1, 100), st.floats(0, 1000)), min_size=0, max_size=5),
    t=st.floats(0, 500),
)
def test_time_of_inverts_cumulative(
    start: float, stages: list[tuple[float, float]], t: float
) -> None:
    profile = RateProfile(start, tuple(stages))
    count = profile.cumulative(t)
    if count > 0:
        assert profile.cumulative(profile.time_of(count)) == pytest.approx(
            count, rel=1e-9, abs=1e-6
        )


def test_a_rate_that_falls_to_zero_never_comes() -> None:
    profile = RateProfile(10.0, ((1.0, 0.0),))
    assert profile.cumulative(5) == pytest.approx(5)
    assert math.isinf(profile.time_of(6))


def test_poisson_arrivals_average_the_rate_and_are_seeded() -> None:
    first = due_times(Pacer(RateProfile.constant(1000), "poisson", seed=3), 20)
    again = due_times(Pacer(RateProfile.constant(1000), "poisson", seed=3), 20)
    assert first == again
    assert len(first) == pytest.approx(20_000, rel=0.03)
    gaps = np.diff(first)
    # Exponential gaps: the standard deviation equals the mean.
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)


def test_rate_factor_applies_from_the_moment_it_changes() -> None:
    pacer = Pacer(RateProfile.constant(10))
    before = [pacer.next_due() for _ in range(10)]
    assert before[-1] == pytest.approx(0.9)
    pacer.set_factor(2.0, at=1.0)
    after = [pacer.next_due() for _ in range(4)]
    assert after == pytest.approx([1.0, 1.05, 1.1, 1.15])
    assert pacer.rate_at(1.0) == 20


def test_rate_factor_zero_stops_arrivals() -> None:
    pacer = Pacer(RateProfile.constant(10))
    pacer.next_due()
    pacer.set_factor(0.0, at=0.5)
    assert math.isinf(pacer.peek())


def test_a_count_at_the_end_of_a_ramp_to_zero_is_found() -> None:
    # Found by hypothesis: rounding put the count just past the ramp, into the zero tail.
    profile = RateProfile(1.15, ((1.0, 1.0), (2.0, 0.0)))
    count = profile.cumulative(3.0)
    assert profile.time_of(count) == pytest.approx(3.0)
