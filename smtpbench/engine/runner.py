"""A load run: the schedule, the sessions under a cap, the drain, the periodic flush.

Every session of a run is driven by one ``Reactor`` (``reactor.py``); this
module is what feeds it: which sessions start, when, and what happens to
those that cannot start yet.

Open model (arrival rate): sessions start when the schedule says, whatever the
server is doing. A session due while ``max_concurrency`` sessions are in flight
waits in a bounded backlog and starts as soon as a slot frees, late; its
lateness is its start lag and counts in its latency from intended start. A
session due when the backlog is full too is dropped and counted, never
silently skipped, so memory stays bounded however slow the server is. The
reactor asks for due sessions every turn; at most ``ARRIVALS_PER_TURN`` are
handled per turn, so sockets, control and signals keep their turn at any rate
asked for, and a rate the machine cannot keep up with shows as start lag and
dropped sessions, never as a hang.

Closed model (concurrency): N slots each start their next session as soon as
the last one ends; there is no schedule to fall behind, so no lag or drops.

Stopping: scheduling stops at the end of the duration, the session count, or a
``stop()``; sessions in flight and waiting then get the grace period to finish,
after which they are cancelled and counted as cancelled (waiting ones as
dropped). ``abort()`` cancels at once.

Workers: with a ``Share``, the run is one of several processes that split one
load (``shares.py``): it starts only its share of the schedule's arrivals,
numbers its sessions as the whole run would, and keeps its part of the limits.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from smtpbench.engine.control import RunControl
from smtpbench.engine.conversation import PlannedConversation
from smtpbench.engine.delivery_queue import DeliveryQueue
from smtpbench.engine.reactor import Machine, Reactor, clock_reader
from smtpbench.engine.schedule import Pacer, RateProfile
from smtpbench.engine.session import Session, SessionSettings
from smtpbench.engine.shares import Share
from smtpbench.metrics.client_groups import ClientGroups
from smtpbench.metrics.events import SessionEvents
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunState, Snapshot

if TYPE_CHECKING:
    from smtpbench.engine.transport import Address
    from smtpbench.scenario import MessageFactory, Scenario
    from smtpbench.transit.sends import TransitSends


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
    def skip_before(self, t: float) -> int: ...
    def rate_at(self, t: float) -> float: ...
    def set_factor(self, factor: float, at: float) -> None: ...


# Builds a session: its plan, its intended start (trio time), what it reports to, the
# clock; the default makes a ``Session`` of the scenario's plan, a replay one of a
# recorded session, tests a stand-in that only takes time.
SessionMaker = Callable[[Any, float, SessionEvents, Callable[[], float]], Machine]
# What one session reports to: the recorder, or a per-session record in front of it.
EventsFor = Callable[[int, float], SessionEvents]

FLUSH_INTERVAL = 1.0  # seconds: one row of the time series each
# Seconds between moves of what sessions reported into the histograms, within a row: the
# work grows with what was reported, and done once a second it stalled the reactor
# (8.5 ms at 5,000 sessions/s, start lag p99 near 2 ms); in tenths, each move is short.
DRAIN_INTERVAL = 0.1
ARRIVALS_PER_TURN = 64  # sessions started, queued or dropped before the sockets' turn
MAX_SWEEP = 0.05  # seconds between timeout sweeps at most


def rate_profile(scenario: Scenario) -> RateProfile:
    load = scenario.load
    if load.stages:
        return RateProfile(load.start_rate, tuple((s.duration, s.rate) for s in load.stages))
    return RateProfile.constant(load.rate)


def planned_sessions(settings: SessionSettings, factory: MessageFactory) -> SessionMaker:
    """The maker of sessions that follow the scenario's plan."""

    def make(
        plan: Any, intended: float, events: SessionEvents, clock: Callable[[], float]
    ) -> Machine:
        domain = None
        if settings.targets is not None and plan.messages and plan.messages[0].recipients:
            domain = plan.messages[0].recipients[0].rpartition("@")[2]
        return Session(
            settings, events, PlannedConversation(factory, plan), intended, clock, domain
        )

    return make


class LoadRun:
    """Runs one scenario against one address; views read it through ``snapshot()`` and
    steer it through ``control``. It is the reactor's ``Feeder``."""

    def __init__(
        self,
        scenario: Scenario,
        address: Address,
        factory: Planner,
        recorder: Recorder,
        control: RunControl | None = None,
        *,
        make_session: SessionMaker | None = None,
        events_for: EventsFor | None = None,
        schedule: Schedule | None = None,
        share: Share | None = None,
        transit: TransitSends | None = None,
    ) -> None:
        self.scenario = scenario
        self.share = share or Share()
        self.load = self.share.load(scenario.load)
        self.settings = SessionSettings.from_scenario(scenario, address)
        if transit is not None:  # run --through: accepted messages are noted for matching
            self.settings = dataclasses.replace(self.settings, transit=transit)
        open_model = self.load.mode == "rate"
        cap = self.load.max_concurrency if open_model else self.load.concurrency
        # [delivery] mode = "mta": deferred messages are queued and tried again.
        self.queue: DeliveryQueue | None = None
        if scenario.delivery.retries:
            self.queue = DeliveryQueue(scenario.delivery, recorder, cap)
            self.settings = dataclasses.replace(self.settings, queue=self.queue)
        if scenario.target.source or scenario.client.addresses:
            # Sessions come from several clients: the figures per client are kept too.
            recorder.clients = recorder.clients or ClientGroups()
            self.settings = dataclasses.replace(self.settings, clients=recorder.clients)
        self.factory = factory
        self.recorder = recorder
        self.control = control or RunControl()
        self._make_session = make_session or planned_sessions(
            self.settings,
            factory,  # type: ignore[arg-type]
        )
        self._events_for = events_for
        self.pacer: Schedule = self.share.schedule(
            schedule or Pacer(rate_profile(scenario), self.load.arrivals, seed=factory.seed)
        )
        self._open_model = open_model
        self._cap = cap
        self._backlog: deque[tuple[Any, float]] = deque()  # (plan, intended start)
        self._running = 0  # sessions started and not ended
        self._sweep = min(MAX_SWEEP, min(scenario.timeouts) / 20)
        self._clock: Callable[[], float] = trio.current_time
        self._reactor: Reactor | None = None
        self._t0 = 0.0
        self._begun = False
        self._paused_total = 0.0
        self._paused_since: float | None = None
        self._scheduling = False
        self._ended_at: float | None = None
        self._next_at = math.inf  # when start_due next has something to do
        self._next_flush = math.inf  # when the next second of the series closes
        self._next_drain = math.inf  # when what was reported next goes into the histograms
        self._next_number = 0  # sessions this run scheduled; share.number() names them

    # -- clocks -----------------------------------------------------------------------

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

    # -- views ------------------------------------------------------------------------

    def snapshot(self, *, live: bool = False) -> Snapshot:
        """The latest figures (``live``: sharing the recorder's arrays, see ``Recorder``)."""
        self.recorder.flush(self.schedule_time(), series=False)
        return self.recorder.snapshot(self.elapsed(), live=live)

    # -- the run ----------------------------------------------------------------------

    async def run(self, start_at: float | None = None) -> Snapshot:
        """Runs to the end; ``start_at`` (trio time) lets workers share one start, so that
        their schedules and per-second intervals line up."""
        recorder = self.recorder
        self._clock = clock_reader(trio.lowlevel.current_clock())
        if self.settings.transit is not None:
            self.settings.transit.anchor(self._clock)
        reactor = self._reactor = Reactor(self, sweep_interval=self._sweep)
        if start_at is not None:
            await trio.sleep_until(start_at)
        self._t0 = recorder.clock_start = start_at if start_at is not None else trio.current_time()
        self._begun = True
        recorder.state = RunState.RUNNING
        self._scheduling = True
        self._next_at = self._t0
        self._apply_control()
        self._update_target_rate()
        self._next_flush = self._t0 + FLUSH_INTERVAL
        self._next_drain = self._t0 + DRAIN_INTERVAL
        # What the process holds before the run (imports, the plan, the buffers) lives as
        # long as the run: kept out of the collector's way, its collections walk only what
        # the sessions make (a few percent of the engine's time on a fast run).
        gc.freeze()
        try:
            async with trio.open_nursery() as background:
                background.start_soon(self._follow_control)
                await reactor.run()
                self._ended_at = trio.current_time()
                if self.queue is not None:
                    self.queue.left_at_end()
                background.cancel_scope.cancel()
        finally:
            gc.unfreeze()
        recorder.flush(self._ended_at - self._t0)
        if self.settings.transit is not None:
            self.settings.transit.flush()
        recorder.state = RunState.INTERRUPTED if self.control.interrupted else RunState.DONE
        return recorder.snapshot(self.elapsed())

    def _flush(self, now: float) -> None:
        """Closes every whole second passed: one row of the series each. Done in the
        reactor's turn before that second's arrivals, so a session due on the second
        counts in the second it starts."""
        while self._next_flush <= now:
            self._update_target_rate()
            self.recorder.flush(self._next_flush - self._t0)
            self._next_flush += FLUSH_INTERVAL
            self._next_drain = now + DRAIN_INTERVAL
            if self.settings.transit is not None:
                self.settings.transit.flush()

    async def _follow_control(self) -> None:
        while True:
            await self.control.wait_changed()
            self._apply_control()
            assert self._reactor is not None
            self._reactor.wake()

    def _apply_control(self) -> None:
        """Pause, resume, a new rate factor, stop or abort, as the control now says."""
        control = self.control
        now = trio.current_time()
        if control.paused and self._paused_since is None and self._scheduling:
            self._paused_since = now
            self.recorder.state = RunState.PAUSED
        elif not control.paused and self._paused_since is not None:
            self._paused_total += now - self._paused_since
            self._paused_since = None
            if self._scheduling:
                self.recorder.state = RunState.RUNNING
        factor = control.rate_factor
        if factor != self.pacer.factor:
            self.pacer.set_factor(factor, at=max(0.0, self.schedule_time()))
            self._update_target_rate()
        if control.stop_requested and self._scheduling:
            self._end_scheduling(now)
        if control.abort_requested and self._reactor is not None:
            self._reactor.cancel_at = now
        self._next_at = now  # look again at what is due

    def _update_target_rate(self) -> None:
        if self._open_model:
            self.recorder.target_rate = self.pacer.rate_at(max(0.0, self.schedule_time()))

    def _end_scheduling(self, now: float) -> None:
        if not self._scheduling:
            return
        self._scheduling = False
        if self._paused_since is not None:
            self._paused_total += now - self._paused_since
            self._paused_since = None
        self.recorder.state = RunState.DRAINING
        assert self._reactor is not None
        grace = self.load.grace
        if self.queue is not None:  # queued messages have until their maximum age
            grace += self.scenario.delivery.max_age
        self._reactor.cancel_at = min(self._reactor.cancel_at, now + grace)

    # -- the reactor's feeder ---------------------------------------------------------

    @property
    def finished(self) -> bool:
        return not self._scheduling and not self._backlog and not self.queue

    def due_at(self) -> float:
        due = min(self._next_at, self._next_flush, self._next_drain)
        queue = self.queue
        if queue and self._running < self._limit():
            due = min(due, queue.due_at())
        return due

    def _limit(self) -> int:
        """Sessions that may be in flight: the cap, or the MTA-like concurrency window."""
        queue = self.queue
        return self._cap if queue is None else min(self._cap, queue.window)

    def start_due(self, now: float) -> None:
        if now >= self._next_flush:
            self._flush(now)
        elif now >= self._next_drain:
            self.recorder.flush(now - self._t0, series=False)
            self._next_drain = now + DRAIN_INTERVAL
        queue = self.queue
        if queue:
            self._retries(queue, now)
        if now < self._next_at:
            return
        self._next_at = math.inf
        started = 0
        backlog = self._backlog
        limit = self._limit()
        while backlog and self._running < limit and started < ARRIVALS_PER_TURN:
            plan, intended = backlog.popleft()
            self.recorder.waiting -= 1
            self._start(plan, intended)
            started += 1
        if started >= ARRIVALS_PER_TURN:
            self._next_at = now
            return
        if not self._scheduling or self._paused_since is not None:
            return
        if self._open_model:
            self._arrivals(now)
        else:
            self._fill_slots(now)

    def session_ended(self) -> None:
        self._running -= 1
        if self._backlog or not self._open_model:
            self._next_at = -math.inf  # a slot is free: start what waits, next turn

    def _retries(self, queue: DeliveryQueue, now: float) -> None:
        """Messages due for another attempt, each in a session of its own, within the
        concurrency window."""
        started = 0
        while (
            queue
            and queue.due_at() <= now
            and self._running < self._limit()
            and started < ARRIVALS_PER_TURN
        ):
            item = queue.take()
            self._running += 1
            self.recorder.scheduled += 1
            self.recorder.sessions_retried += 1
            events: SessionEvents = self.recorder
            if self._events_for is not None:
                events = self._events_for(item.plan.number, now - self._t0)
            conversation = PlannedConversation(
                self.factory,  # type: ignore[arg-type]
                item.plan,
                only=((item.index, item.envelope),),
            )
            session = Session(
                self.settings,
                events,
                conversation,
                now,
                self._clock,
                item.envelope.recipients[0].rpartition("@")[2],
                origin=item.origin,
                tries=item.attempts + 1,
                delivered_before=item.delivered,
            )
            assert self._reactor is not None
            self._reactor.start(session)
            started += 1

    def cut(self) -> None:
        now = trio.current_time()
        self._end_scheduling(now)
        recorder = self.recorder
        if self.queue is not None:
            self.queue.left_at_end()
        # Due, but the run ended before a slot freed: they never started.
        recorder.dropped += len(self._backlog)
        recorder.waiting -= len(self._backlog)
        self._backlog.clear()

    def _start(self, plan: Any, intended: float) -> None:
        self._running += 1
        events: SessionEvents = self.recorder
        if self._events_for is not None:
            events = self._events_for(plan.number, intended - self._t0)
        assert self._reactor is not None
        self._reactor.start(self._make_session(plan, intended, events, self._clock))

    def _done_scheduling(self, due: float) -> bool:
        load = self.load
        if self.control.stop_requested:
            return True
        if load.sessions is not None and self._next_number >= load.sessions:
            return True
        return load.duration is not None and due >= load.duration

    def _next_plan(self) -> Any:
        number = self.share.number(self._next_number)
        self._next_number += 1
        self.recorder.scheduled += 1
        return number

    # -- open model -------------------------------------------------------------------

    def _arrivals(self, now: float) -> None:
        pacer = self.pacer
        recorder = self.recorder
        base = self._t0 + self._paused_total
        duration = self.load.duration
        for _ in range(ARRIVALS_PER_TURN):
            due = pacer.peek()
            idle = math.isinf(due) and duration is not None and not self.control.stop_requested
            if idle and now < base + duration:  # type: ignore[operator]
                # The rate fell to zero: idle until the duration ends or something changes.
                self._next_at = base + duration  # type: ignore[operator]
                return
            if self._done_scheduling(due) or math.isinf(due):
                self._end_scheduling(now)
                return
            intended = base + due
            if intended > now:
                self._next_at = intended
                return
            pacer.next_due()
            number = self._next_plan()
            if self._running < self._limit():
                self._start(self.factory.plan_session(number), intended)
            elif len(self._backlog) < self.load.backlog:
                self._backlog.append((self.factory.plan_session(number), intended))
                recorder.waiting += 1
            else:
                recorder.dropped += 1
                self._drop_the_rest_due(now - base)
        self._next_at = now  # more may be due: after the sockets have had their turn

    def _drop_the_rest_due(self, schedule_now: float) -> None:
        """Every other session due by now would be dropped too (no slot, no room to
        wait): counted in one step, so that no rate, however far beyond the machine,
        keeps the run stepping through arrivals it will never start."""
        load = self.load
        until = schedule_now if load.duration is None else min(schedule_now, load.duration)
        skipped = self.pacer.skip_before(until)
        if load.sessions is not None:
            skipped = min(skipped, load.sessions - self._next_number)
        self._next_number += skipped
        self.recorder.scheduled += skipped
        self.recorder.dropped += skipped

    # -- closed model -----------------------------------------------------------------

    def _fill_slots(self, now: float) -> None:
        """The live knob of the closed model: the rate factor scales the number of slots
        (of the whole run; a worker keeps its part of it)."""
        whole = self.scenario.load.concurrency
        self._cap = self.share.concurrency(max(1, round(whole * self.control.rate_factor)))
        if self.queue is not None:
            self.queue.cap = self._cap
        duration = self.load.duration
        schedule_time = now - self._t0 - self._paused_total
        started = 0
        if self._done_scheduling(schedule_time):
            self._end_scheduling(now)
            return
        while self._running < self._limit():
            if self._done_scheduling(schedule_time):
                self._end_scheduling(now)
                return
            if started >= ARRIVALS_PER_TURN:
                self._next_at = now
                return
            self._start(self.factory.plan_session(self._next_plan()), now)
            started += 1
        if duration is not None:
            self._next_at = self._t0 + self._paused_total + duration


__all__ = [
    "EventsFor",
    "LoadRun",
    "Planner",
    "Schedule",
    "SessionMaker",
    "planned_sessions",
    "rate_profile",
]
