"""Shares of one schedule between workers: together they are exactly the single
schedule, and each worker's runner keeps its part of the limits (MockClock)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.engine.control import RunControl
from smtpbench.engine.runner import LoadRun
from smtpbench.engine.schedule import Pacer, RateProfile
from smtpbench.engine.shares import Share, worker_count
from smtpbench.engine.transport import Address
from smtpbench.metrics.kinds import START_LAG
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.run.prepare import run_info
from smtpbench.scenario import Load, MessageFactory, Scenario, SessionPlan, Stage
from tests.test_runner_clock import scenario, timed_session

ADDRESS = Address("127.0.0.1", 2525, 2, ("127.0.0.1", 2525))


def due_times(schedule: object, until: float, factor_at: tuple[float, float] | None) -> list[float]:
    """Due times before ``until``; with ``factor_at`` (at, factor) the rate factor changes
    once, at the first due time past ``at``, as the runner would apply it."""
    times: list[float] = []
    changed = factor_at is None
    while True:
        due = schedule.peek()  # type: ignore[attr-defined]
        if not changed and factor_at is not None and due >= factor_at[0]:
            schedule.set_factor(factor_at[1], at=factor_at[0])  # type: ignore[attr-defined]
            changed = True
            continue
        if due >= until or math.isinf(due):
            return times
        times.append(schedule.next_due())  # type: ignore[attr-defined]


profiles = st.one_of(
    st.floats(1.0, 300.0).map(RateProfile.constant),
    st.builds(
        lambda start, stages: RateProfile(start, tuple(stages)),
        st.floats(0.0, 200.0),
        st.lists(st.tuples(st.floats(0.5, 4.0), st.floats(0.0, 300.0)), min_size=1, max_size=3),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    profile=profiles,
    arrivals=st.sampled_from(["uniform", "poisson"]),
    seed=st.integers(0, 2**32),
    workers=st.integers(1, 5),
    factor_at=st.none() | st.tuples(st.floats(0.0, 6.0), st.floats(0.0, 3.0)),
)
def test_the_shares_together_are_the_single_schedule(
    profile: RateProfile,
    arrivals: str,
    seed: int,
    workers: int,
    factor_at: tuple[float, float] | None,
) -> None:
    until = 6.0
    whole = due_times(Pacer(profile, arrivals, seed=seed), until, factor_at)  # type: ignore[arg-type]
    parts = [
        due_times(Share(i, workers).schedule(Pacer(profile, arrivals, seed=seed)), until, factor_at)  # type: ignore[arg-type]
        for i in range(workers)
    ]
    # Interleaved, not in blocks: arrival k is worker k % N's.
    assert [whole[k::workers] for k in range(workers)] == parts
    assert sorted(t for part in parts for t in part) == whole


def test_a_share_asks_for_its_part_of_the_rate() -> None:
    profile = RateProfile(0.0, ((10.0, 100.0),))
    share = Share(1, 4).schedule(Pacer(profile))
    assert share.rate_at(5.0) == pytest.approx(50.0 / 4)


@pytest.mark.parametrize(
    ("total", "workers"),
    [(10, 1), (10, 3), (7, 7), (100, 4), (1, 1)],
)
def test_limits_split_to_add_up_to_the_whole(total: int, workers: int) -> None:
    rate = Load(rate=50.0, max_concurrency=total, backlog=total * 3 + 1, sessions=total * 5 + 2)
    closed = Load(mode="concurrency", concurrency=total, duration=10.0, sessions=total * 2 + 1)
    parts = [Share(i, workers).load(rate) for i in range(workers)]
    assert sum(p.max_concurrency for p in parts) == total
    assert sum(p.backlog for p in parts) == rate.backlog
    assert sum(p.sessions or 0 for p in parts) == rate.sessions
    assert {p.rate for p in parts} == {50.0}
    closed_parts = [Share(i, workers).load(closed) for i in range(workers)]
    assert sum(p.concurrency for p in closed_parts) == total
    assert sum(p.sessions or 0 for p in closed_parts) == closed.sessions


def test_never_more_workers_than_sessions_in_flight() -> None:
    assert worker_count(Load(rate=50.0, max_concurrency=1), 8) == 1
    assert worker_count(Load(rate=50.0, max_concurrency=3), 8) == 3
    assert worker_count(Load(mode="concurrency", concurrency=2), 8) == 2
    assert worker_count(Load(rate=50.0, sessions=2, duration=None), 8) == 2
    assert worker_count(Load(rate=50.0), 4) == 4
    with pytest.raises(ValueError):
        Share(2, 2)


# -- the runners, under MockClock ---------------------------------------------------------


def intended_recorder(intended: list[tuple[int, float]], service: float):
    """A stand-in session that notes its number and intended start."""
    inner = timed_session(service)

    def make(plan: SessionPlan, at: float, events, clock):
        intended.append((plan.number, at - events.clock_start))
        return inner(plan, at, events, clock)

    return make


async def run_workers(
    s: Scenario, workers: int, control: RunControl | None = None, service: float = 0.002
) -> tuple[list[Snapshot], list[tuple[int, float]]]:
    """N runners in one trio loop, started together as the worker processes are."""
    intended: list[tuple[int, float]] = []
    start = trio.current_time() + 1.0
    snapshots: list[Snapshot] = []

    async def one(share: Share) -> None:
        factory = MessageFactory(s, seed=1)
        recorder = Recorder(run_info(s, str(ADDRESS), 1))
        runner = intended_recorder(intended, service)
        run = LoadRun(s, ADDRESS, factory, recorder, control, make_session=runner, share=share)
        snapshots.append(await run.run(start_at=start))

    async with trio.open_nursery() as nursery:
        for i in range(workers):
            nursery.start_soon(one, Share(i, workers))
    return snapshots, intended


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


RAMP = (Stage(duration=3.0, rate=60.0), Stage(duration=3.0, rate=20.0))


@pytest.mark.parametrize("arrivals", ["uniform", "poisson"])
async def test_workers_start_the_single_runs_sessions(
    mock_clock: trio.testing.MockClock, arrivals: str
) -> None:
    s = scenario(start_rate=5.0, stages=RAMP, arrivals=arrivals, duration=6.0)
    [single], alone = await run_workers(s, 1)
    parts, together = await run_workers(s, 3)
    # The same numbers at the same intended starts (to rounding of the clock readings).
    together.sort()
    alone.sort()
    assert [number for number, _ in together] == [number for number, _ in alone]
    assert [at for _, at in together] == pytest.approx([at for _, at in alone], abs=1e-9)
    assert single.counters.started == len(alone) > 100
    assert sum(p.counters.started for p in parts) == single.counters.started
    for part in parts:
        assert part.histogram(START_LAG).maximum == 0.0
    # Each worker asks for a third of the rate.
    thirds = sum(p.series.target_rate[2] for p in parts)
    assert thirds == pytest.approx(single.series.target_rate[2])


async def test_session_count_is_split(mock_clock: trio.testing.MockClock) -> None:
    s = scenario(rate=50.0, duration=None, sessions=101)
    parts, intended = await run_workers(s, 4)
    assert sorted(number for number, _ in intended) == list(range(101))
    assert sorted(p.counters.started for p in parts) == [25, 25, 25, 26]


async def test_a_cap_split_between_workers_adds_up(mock_clock: trio.testing.MockClock) -> None:
    # A cap of 1 cannot be split (each worker needs a slot): one worker only.
    assert worker_count(scenario(rate=50.0, duration=2.0, max_concurrency=1).load, 2) == 1
    s = scenario(rate=50.0, duration=2.0, max_concurrency=3, backlog=0)
    assert [Share(i, 3).load(s.load).max_concurrency for i in range(3)] == [1, 1, 1]
    parts, _ = await run_workers(s, 3)
    assert sum(p.counters.started for p in parts) == 100
    assert sum(p.counters.dropped for p in parts) == 0


async def test_closed_model_splits_the_concurrency_and_follows_the_factor(
    mock_clock: trio.testing.MockClock,
) -> None:
    s = scenario(mode="concurrency", concurrency=5, duration=10.0)
    control = RunControl()

    async def steer() -> None:
        await trio.sleep(1.0 + 5.0)  # the workers start one second in
        control.scale_rate(2.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(steer)
        parts, intended = await run_workers(s, 2, control, service=0.125)
    # 3 + 2 loops for 5 s, then 5 + 5: as a single run of 5, then 10 loops.
    assert sum(p.counters.started for p in parts) == 5 * 40 + 10 * 40
    numbers = [number for number, _ in intended]
    assert len(set(numbers)) == len(numbers)
