"""The scheduler, backlog, drops, pause and stop under trio's MockClock, with a
stand-in session that only takes time: fast and exact."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator

import pytest
import trio
import trio.testing

from smtpbench.engine.control import RunControl
from smtpbench.engine.reactor import SessionCancelled
from smtpbench.engine.runner import LoadRun
from smtpbench.engine.transport import Address
from smtpbench.metrics.events import SessionEvents
from smtpbench.metrics.kinds import MESSAGE_LATENCY, START_LAG
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunState
from smtpbench.run.prepare import run_info
from smtpbench.scenario import MessageFactory, Scenario, SessionPlan, default_scenario

ADDRESS = Address("127.0.0.1", 2525, 2, ("127.0.0.1", 2525))


def scenario(**load: object) -> Scenario:
    base = default_scenario()
    return dataclasses.replace(base, load=dataclasses.replace(base.load, **load))


class TimedSession:
    """A stand-in session: reports like the real one and only takes time."""

    def __init__(
        self, service: float, events: SessionEvents, number: int, intended: float, clock
    ) -> None:
        self.address = ADDRESS
        self.deadline = math.inf
        self.service = service
        self.events = events
        self.number = number
        self.intended = intended
        self.clock = clock

    def begin(self) -> Generator[float, None, None]:
        start = self.clock()
        self.events.session_started(start - self.intended)
        return self._service(start)

    def _service(self, start: float) -> Generator[float, None, None]:
        yield start + self.service
        self.events.message(True, self.clock() - self.intended)

    def ended(self, error: Exception | None) -> None:
        if error is not None and not isinstance(error, SessionCancelled):
            raise error
        end = self.clock()
        self.events.session_ended(self.number, end, end - self.intended, 0, None)


def timed_session(service: float, stall_at: int | None = None, stall: float = 0.0):
    """Stand-in sessions of ``service`` seconds (``stall`` seconds for session number
    ``stall_at``)."""

    def make(plan: SessionPlan, intended: float, events: SessionEvents, clock) -> TimedSession:
        took = stall if plan.number == stall_at else service
        return TimedSession(took, events, plan.number, intended, clock)

    return make


def make_run(s: Scenario, session, control: RunControl | None = None) -> LoadRun:
    factory = MessageFactory(s, seed=1)
    recorder = Recorder(run_info(s, str(ADDRESS), 1))
    return LoadRun(s, ADDRESS, factory, recorder, control, make_session=session)


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_sessions_start_on_schedule(mock_clock: trio.testing.MockClock) -> None:
    run = make_run(scenario(rate=500.0, duration=10.0), timed_session(0.001))
    snapshot = await run.run()
    assert snapshot.counters.started == 5000
    assert snapshot.counters.dropped == 0
    assert snapshot.histogram(START_LAG).maximum == 0.0
    assert len(snapshot.series) == 10
    assert list(snapshot.series.column("started")) == [500] * 10


async def test_late_sessions_wait_then_overflow_is_dropped(
    mock_clock: trio.testing.MockClock,
) -> None:
    # 100/s against sessions of 1 s with a cap of 10 and a backlog of 20:
    # 10 run, 20 wait, the rest of each second's arrivals are dropped.
    s = scenario(rate=100.0, duration=5.0, max_concurrency=10, backlog=20, grace=30.0)
    run = make_run(s, timed_session(1.0))
    peak_waiting = 0

    async def watch() -> None:
        nonlocal peak_waiting
        while True:
            peak_waiting = max(peak_waiting, run.recorder.waiting)
            assert run.recorder.in_flight <= 10
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        snapshot = await run.run()
        nursery.cancel_scope.cancel()
    c = snapshot.counters
    assert peak_waiting == 20
    assert c.scheduled == 500
    assert c.started + c.dropped == 500
    assert c.dropped > 400
    assert snapshot.histogram(START_LAG).maximum >= 1.0  # waited for a slot


async def test_coordinated_omission_is_visible_from_intended_start(
    mock_clock: trio.testing.MockClock,
) -> None:
    # One slot, 100 sessions/s of 1 ms each; session 100 stalls for 1 s.
    s = scenario(rate=100.0, duration=5.0, max_concurrency=1, backlog=1000)
    snapshot = await make_run(s, timed_session(0.001, stall_at=100, stall=1.0)).run()
    assert snapshot.counters.started == 500
    assert snapshot.counters.dropped == 0
    message = snapshot.histogram(MESSAGE_LATENCY)
    # About 100 sessions were due during the stall and started late.
    assert message.percentile(99) > 0.5
    assert snapshot.histogram(START_LAG).percentile(90) > 0.1


async def test_pause_stops_new_sessions_and_resume_continues(
    mock_clock: trio.testing.MockClock,
) -> None:
    control = RunControl()
    run = make_run(scenario(rate=10.0, duration=4.0), timed_session(0.01), control)
    async with trio.open_nursery() as nursery:

        async def steer() -> None:
            await trio.sleep(1.05)
            control.pause()
            await trio.sleep(0.1)
            assert run.recorder.state is RunState.PAUSED
            started = run.recorder.started
            await trio.sleep(10)
            assert run.recorder.started == started  # nothing starts while paused
            control.resume()

        nursery.start_soon(steer)
        snapshot = await run.run()
    # Paused time does not count toward the duration: all 40 sessions ran.
    assert snapshot.counters.started == 40
    assert snapshot.elapsed == pytest.approx(14.0, abs=0.2)


async def test_rate_change_reaches_the_schedule(mock_clock: trio.testing.MockClock) -> None:
    control = RunControl()
    run = make_run(scenario(rate=10.0, duration=4.0), timed_session(0.01), control)
    async with trio.open_nursery() as nursery:

        async def steer() -> None:
            await trio.sleep(2.0)
            control.scale_rate(2.0)

        nursery.start_soon(steer)
        snapshot = await run.run()
    assert snapshot.counters.started == pytest.approx(20 + 40, abs=1)
    assert snapshot.series.target_rate[-1] == 20.0


async def test_stop_drains_then_cancels_after_grace(mock_clock: trio.testing.MockClock) -> None:
    control = RunControl()
    s = scenario(rate=10.0, duration=100.0, grace=2.0)
    run = make_run(s, timed_session(0.5, stall_at=5, stall=60.0), control)
    async with trio.open_nursery() as nursery:

        async def steer() -> None:
            await trio.sleep(1.05)
            control.interrupt()

        nursery.start_soon(steer)
        snapshot = await run.run()
    assert snapshot.state is RunState.INTERRUPTED
    assert snapshot.counters.started == 11  # due at 0.0, 0.1, ... 1.0
    assert snapshot.counters.in_flight == 0
    # The stalled session was cut off at the end of the grace period.
    assert snapshot.elapsed == pytest.approx(3.05, abs=0.01)


async def test_session_count_ends_the_run(mock_clock: trio.testing.MockClock) -> None:
    snapshot = await make_run(
        scenario(rate=50.0, duration=None, sessions=123), timed_session(0.01)
    ).run()
    assert snapshot.counters.started == 123


async def test_closed_model_keeps_n_in_flight(mock_clock: trio.testing.MockClock) -> None:
    s = scenario(mode="concurrency", concurrency=5, duration=10.0)
    snapshot = await make_run(s, timed_session(0.125)).run()
    assert snapshot.counters.started == 400
    assert snapshot.histogram(START_LAG).maximum == 0.0
