"""Arrival schedules as pure functions."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
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


def _reference_due(rate: float, changes: list[tuple[float, float]], n: int) -> float:
    """When the n-th session (from 0) is due at a constant ``rate`` whose factor becomes
    ``factor`` at each ``(at, factor)``: where the integral of the rate reaches n."""
    starts = [0.0] + [at for at, _ in changes]
    factors = [1.0] + [factor for _, factor in changes]
    reached = 0.0
    for i, (start, factor) in enumerate(zip(starts, factors, strict=True)):
        end = starts[i + 1] if i + 1 < len(starts) else math.inf
        in_segment = rate * factor * (end - start)
        if n <= reached + in_segment:
            return start + (n - reached) / (rate * factor)
        reached += in_segment
    raise AssertionError("unreachable: the last segment is endless")


def _take_until(pacer: Pacer, until: float, into: list[float]) -> None:
    while pacer.peek() < until:
        into.append(pacer.next_due())


def test_two_rate_changes_in_a_row_keep_the_schedule_continuous() -> None:
    # 10/s; doubled at 1 s (sessions 10..29 at 20/s), doubled again at 2 s (then 40/s).
    pacer = Pacer(RateProfile.constant(10))
    times: list[float] = []
    _take_until(pacer, 1.0, times)
    pacer.set_factor(2.0, at=1.0)
    _take_until(pacer, 2.0, times)
    pacer.set_factor(4.0, at=2.0)
    _take_until(pacer, 3.0, times)
    assert len(times) == 10 + 20 + 40
    assert times[10:12] == pytest.approx([1.0, 1.05])
    assert times[29:32] == pytest.approx([1.95, 2.0, 2.025])  # no gap, no burst at 2 s
    assert times[-1] == pytest.approx(2.975)
    assert pacer.factor == 4.0


@settings(deadline=None)  # up to a few thousand sessions: slow under a tracer
@given(
    rate=st.floats(1.0, 200.0),
    changes=st.lists(st.tuples(st.floats(0.05, 2.0), st.floats(0.1, 5.0)), min_size=1, max_size=4),
)
def test_due_times_follow_the_integral_of_the_rate_through_every_change(
    rate: float, changes: list[tuple[float, float]]
) -> None:
    """Any sequence of live rate changes: the n-th session is due where the integral of
    the rate actually in force reaches n, worked out here segment by segment."""
    at = 0.0
    absolute: list[tuple[float, float]] = []
    for gap, factor in changes:
        at += gap
        absolute.append((at, factor))
    pacer = Pacer(RateProfile.constant(rate))
    times: list[float] = []
    for when, factor in absolute:
        _take_until(pacer, when, times)
        pacer.set_factor(factor, at=when)
    _take_until(pacer, at + 1.0, times)
    expected = [_reference_due(rate, absolute, n) for n in range(len(times))]
    assert times == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert _reference_due(rate, absolute, len(times)) >= at + 1.0 - 1e-9  # none left out


def test_a_negative_rate_factor_is_refused() -> None:
    pacer = Pacer(RateProfile.constant(10))
    with pytest.raises(ValueError, match=r"^a rate factor cannot be negative$"):
        pacer.set_factor(-1.0, at=0.0)


def test_poisson_arrivals_are_running_sums_of_unit_exponential_gaps() -> None:
    # The first arrival is one gap in, not at 0: the process has no memory of the start.
    reference = random.Random(11)
    arrivals = np.cumsum([reference.expovariate(1.0) for _ in range(50)]) / 40.0
    pacer = Pacer(RateProfile.constant(40), "poisson", seed=11)
    times = [pacer.next_due() for _ in range(50)]
    assert times[0] > 0
    assert times == pytest.approx(list(arrivals), rel=1e-12)


def test_uniform_is_the_default_and_starts_at_zero() -> None:
    pacer = Pacer(RateProfile.constant(4), seed=1)
    assert [pacer.next_due() for _ in range(3)] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("rate", [0.4, 0.5, 0.9])
def test_a_rate_below_one_per_second_spaces_sessions_seconds_apart(rate: float) -> None:
    times = due_times(Pacer(RateProfile.constant(rate)), 10)
    gap = 1 / rate
    assert times == pytest.approx([k * gap for k in range(len(times))])
    assert len(times) == math.ceil(10 * rate)


def test_a_ramp_from_zero_starts_its_first_session_at_once() -> None:
    # 0 -> 100/s over 10 s: n sessions by t = 5 t^2, so session n is due at sqrt(n / 5).
    times = due_times(Pacer(RateProfile(0.0, ((10.0, 100.0),))), 10)
    assert times[0] == 0.0
    assert times[1:4] == pytest.approx([math.sqrt(k / 5) for k in (1, 2, 3)])


def test_rate_at_follows_each_ramp_and_holds_after_the_last() -> None:
    # 0 -> 100/s over 10 s, then 100 -> 200/s over 10 s, then 200/s for ever.
    profile = RateProfile(0.0, ((10.0, 100.0), (10.0, 200.0)))
    assert profile.rate_at(0.5) == pytest.approx(5.0)
    assert profile.rate_at(5.0) == pytest.approx(50.0)
    assert profile.rate_at(10.0) == pytest.approx(100.0)
    assert profile.rate_at(15.0) == pytest.approx(150.0)
    assert profile.rate_at(25.0) == pytest.approx(200.0)
    assert profile.rate_at(math.inf) == 200.0
    assert RateProfile.constant(7.0).rate_at(math.inf) == 7.0
    assert RateProfile.constant(7.0).stages == ()


def test_a_stage_of_no_duration_is_a_step_in_the_rate() -> None:
    # 10/s for 5 s, then at once 50/s: 50 sessions by 5 s, 250 more by 10 s.
    profile = RateProfile(10.0, ((5.0, 10.0), (0.0, 50.0)))
    assert profile.rate_at(4.0) == pytest.approx(10.0)
    assert profile.rate_at(6.0) == pytest.approx(50.0)
    assert profile.cumulative(10.0) == pytest.approx(300.0)
    assert profile.time_of(300.0) == pytest.approx(10.0)
    pacer = Pacer(profile)
    times: list[float] = []
    _take_until(pacer, 8.0, times)
    pacer.set_factor(2.0, at=8.0)  # 50 + 150 sessions by 8 s, then 100/s
    _take_until(pacer, 9.0, times)
    assert len(times) == 200 + 100
    assert times[200] == pytest.approx(8.0)


def test_a_large_count_at_the_end_of_a_ramp_to_zero_is_found() -> None:
    # The boundary's tolerance is relative: at ~650,000 arrivals, rounding is far above 1e-9.
    profile = RateProfile(1988.79, ((600.93, 70.29), (937.58, 0.0)))
    count = profile.cumulative(600.93 + 937.58)
    assert profile.time_of(count) == pytest.approx(1538.51)


# -- skipping what a run too far behind cannot start --------------------------------------


def test_skip_before_takes_every_due_time_before_the_moment_at_once() -> None:
    pacer = Pacer(RateProfile.constant(10))
    assert pacer.skip_before(1.0) == 10  # 0, 0.1, ..., 0.9
    assert pacer.next_due() == pytest.approx(1.0)
    taken = [pacer.next_due() for _ in range(3)]
    assert taken == pytest.approx([1.1, 1.2, 1.3])
    assert pacer.skip_before(1.65) == 3  # 1.4, 1.5, 1.6
    assert pacer.next_due() == pytest.approx(1.7)


def test_skip_before_follows_ramps_and_rate_changes() -> None:
    # 0 -> 100/s over 10 s: session n is due at sqrt(n / 5), so 80 fall before 4 s.
    ramp = Pacer(RateProfile(0.0, ((10.0, 100.0),)))
    assert ramp.skip_before(4.0) == 80
    assert ramp.next_due() == pytest.approx(4.0)
    doubled = Pacer(RateProfile.constant(10))
    assert doubled.skip_before(1.0) == 10
    doubled.set_factor(2.0, at=1.0)
    assert doubled.skip_before(2.0) == 20
    assert doubled.next_due() == pytest.approx(2.0)


def test_skip_before_skips_nothing_when_nothing_is_due() -> None:
    pacer = Pacer(RateProfile.constant(10))
    assert pacer.skip_before(0.0) == 0  # the first is due at 0, not before it
    assert pacer.next_due() == 0.0
    pacer.set_factor(0.0, at=0.05)
    assert pacer.skip_before(100.0) == 0
    poisson = Pacer(RateProfile.constant(10), "poisson", seed=4)
    first = poisson.peek()
    assert poisson.skip_before(first) == 0
    assert poisson.next_due() == first


def test_poisson_skips_a_poisson_number_and_starts_afresh() -> None:
    counts = []
    for seed in range(300):
        pacer = Pacer(RateProfile.constant(50), "poisson", seed=seed)
        counts.append(pacer.skip_before(10.0))
        after = pacer.next_due()
        assert after >= 10.0
        assert after < 10.0 + 1.0  # one exponential gap of mean 20 ms later, not seconds
    assert min(counts) >= 1
    assert np.mean(counts) == pytest.approx(500, rel=0.02)  # 50/s for 10 s
    assert np.std(counts) == pytest.approx(np.sqrt(500), rel=0.25)  # Poisson: sd = sqrt(mean)
    again = Pacer(RateProfile.constant(50), "poisson", seed=7)
    assert again.skip_before(10.0) == counts[7]


def test_skipping_just_past_the_next_due_time_skips_that_one() -> None:
    uniform = Pacer(RateProfile.constant(10))
    assert uniform.skip_before(0.05) == 1  # only the one at 0
    assert uniform.next_due() == pytest.approx(0.1)
    for seed in range(20):
        poisson = Pacer(RateProfile.constant(10), "poisson", seed=seed)
        first = poisson.peek()
        assert poisson.skip_before(first + 1e-9) == 1
        assert poisson.next_due() > first + 1e-9


def test_poisson_skips_only_what_is_left_before_the_moment() -> None:
    counts = []
    for seed in range(300):
        pacer = Pacer(RateProfile.constant(50), "poisson", seed=seed)
        while pacer.peek() < 5.0:  # 5 s taken one by one, 5 s more skipped
            pacer.next_due()
        counts.append(pacer.skip_before(10.0))
    assert np.mean(counts) == pytest.approx(250, rel=0.03)
