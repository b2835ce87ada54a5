"""The search run as steps of one engine run: the rate changed through the engine's
control at each step, each step's steady part judged (``verdict.judge``), the next
rate chosen (``search.Search``), the run stopped when the search is over.

The driver only polls and steers an ``Engine``: the engine in this process's trio
loop (``InProcessEngine``, headless) or in a child process (``ProcessEngine``, under
the dashboard, driven from a thread of its own).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from smtpbench.capacity.search import Ramp, Search
from smtpbench.capacity.verdict import Machine, StepResult, judge, peak_in_flight
from smtpbench.capacity.window import between
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.report.thresholds import evaluate
from smtpbench.thresholds import Kind, Threshold

# Before, after, the engine's CPU share and its share of time waiting for a CPU between
# them, and whether a count criterion cut the step short.
Measured = tuple[Snapshot, Snapshot, float | None, float | None, bool]
POLL = 0.25  # seconds between looks at the engine within a step
RECOVERY_LIMIT = 30.0  # seconds a broken step's backlog may take to drain before the next


class Engine(Protocol):
    """What the driver needs of a running engine."""

    def elapsed(self) -> float | None: ...  # seconds since the run's start; None: not yet
    def snapshot(self) -> Snapshot | None: ...
    def set_rate(self, rate: float) -> None: ...  # and start sessions again after hold()
    def hold(self) -> None: ...  # no new sessions until the next set_rate
    def cpu_seconds(self) -> float | None: ...  # the engine's CPU time so far; None: unknown
    def cpu_waited(self) -> float | None: ...  # seconds it was ready but had no CPU; None: unknown
    def stop(self) -> None: ...

    @property
    def stop_requested(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """How the search runs: the rates, how long each is held, what it must meet."""

    ramp: Ramp
    step_duration: float  # seconds each rate is held
    settle: float  # seconds at the start of each step left out of its figures
    criteria: tuple[Threshold, ...]
    reach: float = 0.9  # share of the rate the sessions started must reach
    cap: int = 1000  # sessions allowed in flight
    messages_per_session: float = 0.0  # on average; 0: no criterion on messages accepted

    def __post_init__(self) -> None:
        if not self.step_duration > 0:
            raise ValueError("a step must last longer than 0 seconds")
        if not 0 <= self.settle < self.step_duration:
            raise ValueError(
                f"the settling time ({self.settle:g}s) must be shorter than a step "
                f"({self.step_duration:g}s)"
            )
        if not 0 < self.reach <= 1:
            raise ValueError(f"the share to reach lies above 0% and up to 100%, got {self.reach}")

    @property
    def longest(self) -> float:
        """The longest the search can take: every step, and a recovery after a broken one."""
        recoveries = self.ramp.refine + 1
        return self.ramp.most_steps * self.step_duration + recoveries * RECOVERY_LIMIT


@dataclass(slots=True)
class Progress:
    """What the search has done so far; views read it while it runs."""

    plan: Plan
    search: Search
    steps: list[StepResult] = field(default_factory=list)
    current: int = 0  # the step being held (from 1); 0 before the first
    rate: float | None = None  # its rate
    phase: str = "starting"  # "settling", "measuring", "recovering", "done"
    stopped: bool = False  # stopped before the search was over (a signal, q)

    def status(self) -> str:
        """One line for headers and live output."""
        if self.phase == "done":
            text = f"capacity search done after {len(self.steps)} steps"
            if self.search.held is not None:
                text += f": held {self.search.held:g}/s"
            if self.search.broke is not None:
                text += f", broke at {self.search.broke:g}/s"
            return text
        if self.rate is None:
            return "capacity search starting"
        most = self.plan.ramp.most_steps
        text = f"capacity step {self.current} (at most {most}): {self.rate:g}/s, {self.phase}"
        held = self.search.held
        if held is not None:
            text += f"; held {held:g}/s"
        if self.search.broke is not None:
            text += f", broke at {self.search.broke:g}/s"
        return text


async def _sleep_until(engine: Engine, at: float) -> bool:
    """Sleeps until the run's clock reads ``at``; False if the run is being stopped."""
    while not engine.stop_requested:
        now = engine.elapsed()
        if now is not None and now >= at:
            return True
        await trio.sleep(POLL if now is None else max(0.0, min(POLL, at - now)))
    return False


def _count_broken(criteria: Sequence[Threshold], window: Snapshot) -> bool:
    """Whether a count criterion (``dropped == 0``) has broken for good already."""
    counts = [t for t in criteria if t.metric.kind is Kind.COUNT and t.final_when_failing]
    return any(not r.passed and r.measured is not None for r in evaluate(counts, window))


async def _measure(engine: Engine, progress: Progress, began: float) -> Measured | None:
    """The snapshots at the start and the end of the step's steady part, the engine's
    CPU share between them, and whether a count criterion cut it short."""
    plan = progress.plan
    if not await _sleep_until(engine, began + plan.settle):
        return None
    progress.phase = "measuring"
    before = engine.snapshot()
    cpu_before = engine.cpu_seconds()
    waited_before = engine.cpu_waited()
    if before is None:
        return None
    end = began + plan.step_duration
    cut = False
    while True:
        if not await _sleep_until(engine, min(end, (engine.elapsed() or 0.0) + POLL)):
            return None
        after = engine.snapshot()
        if after is None:
            return None
        if after.elapsed >= end - 1e-6:
            break
        if _count_broken(plan.criteria, between(before, after)):
            cut = True
            break
    wall = after.elapsed - before.elapsed
    return (
        before,
        after,
        _share(cpu_before, engine.cpu_seconds(), wall),
        _share(waited_before, engine.cpu_waited(), wall),
        cut,
    )


def _share(start: float | None, end: float | None, wall: float) -> float | None:
    if start is None or end is None or wall <= 0:
        return None
    return max(0.0, (end - start) / wall)


async def _recover(engine: Engine, limit: float = RECOVERY_LIMIT) -> None:
    """No new sessions until what the broken step left in flight and waiting is gone."""
    engine.hold()
    deadline = (engine.elapsed() or 0.0) + limit
    while not engine.stop_requested:
        snapshot = engine.snapshot()
        now = engine.elapsed() or 0.0
        if snapshot is not None and snapshot.counters.in_flight + snapshot.counters.waiting == 0:
            return
        if now >= deadline:
            return
        await trio.sleep(POLL)


async def drive(
    engine: Engine,
    progress: Progress,
    said: Callable[[str], None] = lambda _: None,
    step_done: Callable[[StepResult], None] = lambda _: None,
) -> None:
    """Runs the search against ``engine``; stops the engine at the end."""
    plan = progress.plan
    search = progress.search
    first: StepResult | None = None
    try:
        while (rate := search.next_rate()) is not None and not engine.stop_requested:
            if progress.steps and not progress.steps[-1].held:
                progress.phase = "recovering"
                said("recovering: no new sessions until the last step's are done")
                await _recover(engine)
            progress.current += 1
            progress.rate = rate
            progress.phase = "settling"
            engine.set_rate(rate)
            began = engine.elapsed() or 0.0
            said(progress.status())
            measured = await _measure(engine, progress, began)
            if measured is None:
                progress.stopped = True
                break
            before, after, share, waited, cut = measured
            window = between(before, after)
            peak = peak_in_flight(after, before.elapsed, after.elapsed)
            machine = Machine(share, plan.cap, peak, waited)
            result = judge(
                progress.current,
                rate,
                began,
                window,
                before.elapsed,
                plan.criteria,
                plan.reach,
                machine,
                first,
                cut_short=cut,
                messages_per_session=plan.messages_per_session,
            )
            first = first or result
            progress.steps.append(result)
            search.record(rate, result.held)
            step_done(result)
        else:
            progress.stopped = engine.stop_requested and search.next_rate() is not None
    finally:
        progress.phase = "done"
        engine.stop()


def _main_thread_stat(pid: int | str, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/{name}", encoding="ascii") as stat:
            return stat.read()
    except OSError:
        return None


class ProcessCpu:
    """CPU time (user and system) and time spent ready to run without a CPU (the run
    queue's wait, from schedstat) of processes' main threads, where the engine's loop
    runs; from /proc (Linux), None elsewhere or once a process is gone. With several,
    the busiest one: a search is held back by its busiest engine."""

    def __init__(self, pids: Callable[[], Sequence[int | str]]) -> None:
        self.pids = pids
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float | None:
        best = None
        for pid in self.pids():
            text = _main_thread_stat(pid, "stat")
            if text is None:
                return None
            fields = text.rpartition(")")[2].split()
            used = (int(fields[11]) + int(fields[12])) / self._tick
            best = used if best is None else max(best, used)
        return best

    def waited(self) -> float | None:
        best = None
        for pid in self.pids():
            text = _main_thread_stat(pid, "schedstat")
            if text is None:
                return None
            waited = int(text.split()[1]) / 1e9
            best = waited if best is None else max(best, waited)
        return best


def own_cpu_seconds() -> float:
    """This process's CPU time: the engine's, when it runs in this process."""
    return time.process_time()


OWN = ProcessCpu(lambda: ["self"])
