"""A load run: the schedule, the sessions under a cap, the drain, the periodic flush.

Open model (arrival rate): sessions start when the schedule says, whatever the
server is doing. A session due while ``max_concurrency`` sessions are in flight
waits in a bounded backlog and starts as soon as a slot frees, late; its
lateness is its start lag and counts in its latency from intended start. A
session due when the backlog is full too is dropped and counted, never
silently skipped, so memory stays bounded however slow the server is.

Closed model (concurrency): N loops each start their next session when the
last one ends; there is no schedule to fall behind, so no lag or drops.

Stopping: scheduling stops at the end of the duration, the session count, or a
``stop()``; sessions in flight and waiting then get the grace period to finish,
after which they are cancelled and counted as cancelled.

Workers: with a ``Share``, the run is one of several processes that split one
load (``shares.py``): it starts only its share of the schedule's arrivals,
numbers its sessions as the whole run would, and keeps its part of the limits.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from smtpbench.engine.control import RunControl
from smtpbench.engine.schedule import Pacer, RateProfile
from smtpbench.engine.session import SessionSettings, run_session
from smtpbench.engine.shares import Share
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunState, Snapshot

if TYPE_CHECKING:
    from smtpbench.engine.transport import Address
    from smtpbench.scenario import Scenario, SessionPlan


class Planner(Protocol):
    """Where each session's plan comes from: the scenario's ``MessageFactory``, or a
    recording being replayed. Called in schedule order."""

    @property
    def seed(self) -> int: ...

    def plan_session(self, number: int) -> Any: ...


class Schedule(Protocol):
    """When sessions are due (``Pacer`` is the one for rates and ramps; replay has one
    of recorded offsets). Times are seconds of schedule time from the start."""

    @property
    def factor(self) -> float: ...

    def peek(self) -> float: ...
    def next_due(self) -> float: ...
    def rate_at(self, t: float) -> float: ...
    def set_factor(self, factor: float, at: float) -> None: ...


SessionRunner = Callable[[SessionSettings, Recorder, Any, Any, float], Awaitable[None]]
FLUSH_INTERVAL = 1.0  # seconds: one row of the time series each


def rate_profile(scenario: Scenario) -> RateProfile:
    load = scenario.load
    if load.stages:
        return RateProfile(load.start_rate, tuple((s.duration, s.rate) for s in load.stages))
    return RateProfile.constant(load.rate)


class LoadRun:
    """Runs one scenario against one address; views read it through ``snapshot()`` and
    steer it through ``control``."""

    def __init__(
        self,
        scenario: Scenario,
        address: Address,
        factory: Planner,
        recorder: Recorder,
        control: RunControl | None = None,
        session_runner: SessionRunner = run_session,
        schedule: Schedule | None = None,
        share: Share | None = None,
    ) -> None:
        self.scenario = scenario
        self.share = share or Share()
        self.load = self.share.load(scenario.load)
        self.settings = SessionSettings.from_scenario(scenario, address)
        self.factory = factory
        self.recorder = recorder
        self.control = control or RunControl()
        self._run_session = session_runner  # tests put a timed stand-in here
        self.pacer: Schedule = self.share.schedule(
            schedule or Pacer(rate_profile(scenario), self.load.arrivals, seed=factory.seed)
        )
        cap = self.load.max_concurrency if self.load.mode == "rate" else self.load.concurrency
        self.limiter = trio.CapacityLimiter(cap)
        self._t0 = 0.0
        self._begun = False
        self._paused_total = 0.0
        self._paused_since: float | None = None
        self._scheduling = False
        self._ended_at: float | None = None
        self._next_number = 0  # sessions this run scheduled; share.number() names them
        self._loops = 0
        self._loops_ended = trio.Event()

    # -- clocks -----------------------------------------------------------

    def elapsed(self) -> float:
        if not self._begun:
            return 0.0
        end = self._ended_at if self._ended_at is not None else trio.current_time()
        return max(0.0, end - self._t0)

    def schedule_time(self) -> float:
        """Seconds of running since the start, pauses excluded: what the schedule and the
        duration count in."""
        now = trio.current_time()
        paused = self._paused_total
        if self._paused_since is not None:
            paused += now - self._paused_since
        return now - self._t0 - paused

    def remaining(self) -> float | None:
        if self.load.duration is None:
            return None
        if not self._begun:
            return self.load.duration
        if not self._scheduling:
            return 0.0
        return max(0.0, self.load.duration - self.schedule_time())

    # -- views ------------------------------------------------------------

    def snapshot(self, *, live: bool = False) -> Snapshot:
        """The latest figures (``live``: sharing the recorder's arrays, see ``Recorder``)."""
        self.recorder.flush(self.schedule_time(), series=False)
        return self.recorder.snapshot(self.elapsed(), live=live)

    # -- the run ----------------------------------------------------------

    async def run(self, start_at: float | None = None) -> Snapshot:
        """Runs to the end; ``start_at`` (trio time) lets workers share one start, so that
        their schedules and per-second intervals line up."""
        recorder = self.recorder
        if start_at is not None:
            await trio.sleep_until(start_at)
        self._t0 = recorder.clock_start = start_at if start_at is not None else trio.current_time()
        self._begun = True
        recorder.state = RunState.RUNNING
        self._scheduling = True
        self._update_target_rate()
        async with trio.open_nursery() as background:
            background.start_soon(self._flush_periodically)
            async with trio.open_nursery() as sessions:
                background.start_soon(self._abort_on_request, sessions.cancel_scope)
                if self.load.mode == "rate":
                    await self._schedule_arrivals(sessions)
                else:
                    await self._run_loops(sessions)
                self._scheduling = False
                recorder.state = RunState.DRAINING
                sessions.cancel_scope.deadline = trio.current_time() + self.load.grace
            self._ended_at = trio.current_time()
            background.cancel_scope.cancel()
        recorder.flush(self._ended_at - self._t0)
        recorder.state = RunState.INTERRUPTED if self.control.interrupted else RunState.DONE
        return recorder.snapshot(self.elapsed())

    async def _abort_on_request(self, scope: trio.CancelScope) -> None:
        await self.control.aborted.wait()
        scope.cancel()

    async def _flush_periodically(self) -> None:
        tick = 1
        while True:
            await trio.sleep_until(self._t0 + tick * FLUSH_INTERVAL)
            self._update_target_rate()
            self.recorder.flush(tick * FLUSH_INTERVAL)
            tick += 1

    def _update_target_rate(self) -> None:
        if self.load.mode == "rate":
            self.recorder.target_rate = self.pacer.rate_at(max(0.0, self.schedule_time()))

    def _done_scheduling(self, due: float) -> bool:
        load = self.load
        if self.control.stop_requested:
            return True
        if load.sessions is not None and self._next_number >= load.sessions:
            return True
        return load.duration is not None and due >= load.duration

    async def _wait_while_paused(self) -> None:
        control = self.control
        if not control.paused:
            return
        self._paused_since = trio.current_time()
        self.recorder.state = RunState.PAUSED
        while control.paused and not control.stop_requested:
            await control.wait_changed()
        self._paused_total += trio.current_time() - self._paused_since
        self._paused_since = None
        self.recorder.state = RunState.RUNNING

    def _apply_rate_factor(self) -> None:
        factor = self.control.rate_factor
        if factor != self.pacer.factor:
            self.pacer.set_factor(factor, at=max(0.0, self.schedule_time()))
            self._update_target_rate()

    # -- open model -------------------------------------------------------

    async def _schedule_arrivals(self, nursery: trio.Nursery) -> None:
        control = self.control
        recorder = self.recorder
        limiter = self.limiter
        backlog = self.load.backlog
        while True:
            await self._wait_while_paused()
            self._apply_rate_factor()
            due = self.pacer.peek()
            if self._done_scheduling(due) or math.isinf(due):
                if math.isinf(due) and not control.stop_requested and self.load.duration:
                    # The rate fell to zero: idle until the duration ends or something changes.
                    with trio.move_on_at(self._t0 + self._paused_total + self.load.duration):
                        await control.wait_changed()
                        continue
                return
            deadline = self._t0 + self._paused_total + due
            if trio.current_time() < deadline:
                with trio.move_on_at(deadline) as waited:
                    await control.wait_changed()
                if not waited.cancelled_caught:
                    continue  # paused, rate changed or stopped: look again
            self.pacer.next_due()
            number = self.share.number(self._next_number)
            self._next_number += 1
            recorder.scheduled += 1
            token = object()
            try:
                limiter.acquire_on_behalf_of_nowait(token)
                waiting = False
            except trio.WouldBlock:
                if recorder.waiting >= backlog:
                    recorder.dropped += 1
                    continue
                recorder.waiting += 1
                waiting = True
            plan = self.factory.plan_session(number)
            nursery.start_soon(self._session, plan, deadline, token, waiting)

    async def _session(
        self, plan: SessionPlan, intended: float, token: object, waiting: bool
    ) -> None:
        limiter = self.limiter
        if waiting:
            try:
                await limiter.acquire_on_behalf_of(token)
            except trio.Cancelled:
                # Due, but the run ended before a slot freed: it never started.
                self.recorder.waiting -= 1
                self.recorder.dropped += 1
                raise
            self.recorder.waiting -= 1
        try:
            await self._run_session(self.settings, self.recorder, self.factory, plan, intended)
        finally:
            limiter.release_on_behalf_of(token)

    # -- closed model -----------------------------------------------------

    async def _run_loops(self, nursery: trio.Nursery) -> None:
        control = self.control
        duration = self.load.duration
        self._loops_ended = trio.Event()
        while not self._done_scheduling(self.schedule_time()) and not self._loops_ended.is_set():
            if control.paused:
                await self._wait_while_paused()
                continue
            self._apply_concurrency(nursery)
            deadline = math.inf if duration is None else self._t0 + self._paused_total + duration
            with trio.move_on_at(deadline):
                await _first_of(control.wait_changed, self._loops_ended.wait)

    def _apply_concurrency(self, nursery: trio.Nursery) -> None:
        """The live knob of the closed model: the rate factor scales the number of loops
        (of the whole run; a worker keeps its part of it)."""
        whole = self.scenario.load.concurrency
        wanted = self.share.concurrency(max(1, round(whole * self.control.rate_factor)))
        if wanted != self.limiter.total_tokens:
            self.limiter.total_tokens = wanted
        while self._loops < wanted:
            self._loops += 1
            nursery.start_soon(self._loop)

    async def _loop(self) -> None:
        try:
            await self._loop_sessions()
        finally:
            self._loops -= 1
            if self._loops == 0:
                self._loops_ended.set()

    async def _loop_sessions(self) -> None:
        control = self.control
        while not self._done_scheduling(self.schedule_time()):
            if control.paused:
                await control.wait_changed()
                continue
            async with self.limiter:
                if control.paused or self._done_scheduling(self.schedule_time()):
                    continue
                number = self.share.number(self._next_number)
                self._next_number += 1
                self.recorder.scheduled += 1
                plan = self.factory.plan_session(number)
                await self._run_session(
                    self.settings, self.recorder, self.factory, plan, trio.current_time()
                )


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Returns as soon as any of the waits does."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)
