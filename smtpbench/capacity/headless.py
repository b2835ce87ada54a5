"""A capacity search without the dashboard: the engine in this process's trio loop,
steered by the driver, a line per step and live lines between, then the step table,
the conclusion and the results folder."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from rich.console import Console
from rich.markup import escape

from smtpbench import exitcodes
from smtpbench.capacity.driver import OWN, Plan, Progress, drive, own_cpu_seconds
from smtpbench.capacity.processes import ProcessEngine
from smtpbench.capacity.report import Conclusion, conclude, steps_table, write_capacity
from smtpbench.capacity.search import Search
from smtpbench.capacity.verdict import StepResult
from smtpbench.engine.cluster import ClusterError, ClusterGroup, ClusterSettings
from smtpbench.engine.control import RunControl
from smtpbench.engine.embedded import EmbeddedSinkError
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineJob
from smtpbench.engine.runner import LoadRun, SessionMaker, planned_sessions
from smtpbench.engine.session import SessionSettings
from smtpbench.engine.transport import TargetError
from smtpbench.files import OutputError
from smtpbench.metrics.events import SessionEvents
from smtpbench.metrics.hosts import Hosts, hosts_table
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunInfo, RunState, Snapshot
from smtpbench.outcome import RunOutcome, finish_run, with_hosts
from smtpbench.report.live import live_line
from smtpbench.report.output import print_whole
from smtpbench.run.engines import describe, hosts_of, on_cluster
from smtpbench.run.handle import POLL as WORKERS_POLL
from smtpbench.run.headless import EngineFailedError, watch_run, watch_signals
from smtpbench.run.prepare import run_info
from smtpbench.run.stopping import RunWatch, Stopper
from smtpbench.run.target import open_target
from smtpbench.scenario import MessageFactory, Scenario, run_seed, scenario_to_toml
from smtpbench.thresholds import NO_THRESHOLDS
from smtpbench.units import format_duration

if TYPE_CHECKING:
    from smtpbench.engine.reactor import Machine


@dataclass(frozen=True, slots=True)
class CapacityOptions:
    scenario: Scenario  # open model at the first rate, lasting at least plan.longest
    plan: Plan
    results_base: Path = Path("results")
    progress_interval: float = 2.0
    keep_going: bool = False
    workers: int = 1  # engine processes; 1 runs the engine in this process (headless)
    # --cluster: the engines on a Dask cluster's workers (``cluster.workers`` of them, or
    # one on each; ``workers`` is then not used)
    cluster: ClusterSettings | None = None
    # For tests only: CPU seconds the engine spends on every session it starts, to make
    # this machine, not the server, the limit.
    slow_engine: float = 0.0


@dataclass(frozen=True, slots=True)
class CapacityOutcome:
    progress: Progress
    conclusion: Conclusion
    run: RunOutcome
    exit_code: int


class InProcessEngine:
    """The driver's handle on a ``LoadRun`` in this trio loop."""

    def __init__(self, run: LoadRun, control: RunControl, base_rate: float) -> None:
        self.run = run
        self.control = control
        self.base_rate = base_rate

    def elapsed(self) -> float | None:
        if self.run.recorder.state is RunState.STARTING:
            return None
        return self.run.elapsed()

    def snapshot(self) -> Snapshot | None:
        if self.run.recorder.state is RunState.STARTING:
            return None
        return self.run.snapshot()

    def set_rate(self, rate: float) -> None:
        self.control.set_rate_factor(rate / self.base_rate)
        if self.control.paused:
            self.control.resume()

    def hold(self) -> None:
        self.control.pause()

    def cpu_seconds(self) -> float | None:
        return own_cpu_seconds()

    def cpu_waited(self) -> float | None:
        return OWN.waited()

    def stop(self) -> None:
        self.control.stop()

    @property
    def stop_requested(self) -> bool:
        return self.control.stop_requested


def slowed(make: SessionMaker, seconds: float) -> SessionMaker:
    """Sessions made after ``seconds`` of CPU spent in this process (tests only)."""

    def make_slowly(
        plan: Any, intended: float, events: SessionEvents, clock: Callable[[], float]
    ) -> Machine:
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        return make(plan, intended, events, clock)

    return make_slowly


def step_line(step: StepResult) -> str:
    server = step.p99.get("DATA end")
    parts = [
        f"step {step.index}: {step.rate:g}/s",
        f"started {step.achieved:,.1f}/s",
        f"accepted {step.messages:,.1f}/s",
    ]
    if server is not None:
        parts.append(f"DATA end p99 {format_duration(server)}")
    if step.start_lag_p99 is not None:
        parts.append(f"start lag p99 {format_duration(step.start_lag_p99)}")
    if step.machine.cpu_share is not None:
        parts.append(f"engine CPU {step.machine.cpu_share:.0%}")
    if step.machine.cpu_wait is not None:
        parts.append(f"waiting for CPU {step.machine.cpu_wait:.0%}")
    if step.held:
        verdict = "[green]held[/]"
    else:
        broken = ", ".join(f"{r.threshold} ({r.measured_text})" for r in step.broken_by)
        verdict = f"[bold red]broke: {escape(broken)}[/]"
    line = escape("  ".join(parts)) + "  " + verdict
    if step.tool_signs:
        line += "  [yellow]this machine: " + escape("; ".join(step.tool_signs)) + "[/]"
    if step.notes:
        line += "  [dim]" + escape("; ".join(step.notes)) + "[/]"
    return line


async def _live_lines(
    engine: InProcessEngine, progress: Progress, interval: float, console: Console
) -> None:
    while progress.phase != "done":
        await trio.sleep(interval)
        snapshot = engine.snapshot()
        if snapshot is not None and progress.phase != "done":
            line = f"{progress.status()}  |  {live_line(snapshot, None)}"
            console.print(line, highlight=False, soft_wrap=True, style="dim")


async def search_capacity(
    options: CapacityOptions, console: Console
) -> tuple[Progress, Snapshot, Scenario, Hosts | None]:
    scenario = options.scenario
    async with open_target(scenario) as (address, label):
        factory = MessageFactory(scenario)
        resolved = dataclasses.replace(scenario, seed=factory.seed)
        recorder = Recorder(search_info(run_info(resolved, label, factory.seed), options.plan))
        control = RunControl()
        make = planned_sessions(SessionSettings.from_scenario(resolved, address), factory)
        if options.slow_engine > 0:
            make = slowed(make, options.slow_engine)
        run = LoadRun(resolved, address, factory, recorder, control, make_session=make)
        engine = InProcessEngine(run, control, resolved.load.rate)
        progress = Progress(options.plan, Search(options.plan.ramp))
        console.print(
            f"[bold]smtpbench capacity[/] {escape(scenario.name)} against {escape(label)}: "
            f"{escape(_plan_line(options.plan))}",
            highlight=False,
        )

        async with trio.open_nursery() as nursery:
            stopper = Stopper(control)
            watch = RunWatch(NO_THRESHOLDS, options.keep_going)
            nursery.start_soon(watch_signals, stopper, console)
            nursery.start_soon(watch_run, run.snapshot, watch, stopper, console)
            nursery.start_soon(_live_lines, engine, progress, options.progress_interval, console)
            nursery.start_soon(drive, engine, progress, _said(console), _step_done(console))
            final = await run.run()
            nursery.cancel_scope.cancel()
    if control.interrupted:
        progress.stopped = True
    return progress, final, resolved, None


async def search_with_workers(
    options: CapacityOptions, console: Console
) -> tuple[Progress, Snapshot, Scenario, Hosts | None]:
    """The search with the engine in ``options.workers`` processes, or on a cluster's
    workers, steered from here; with a cluster, its figures per host."""
    scenario = options.scenario
    async with open_target(scenario) as (address, label):
        seed = run_seed(scenario)
        resolved = dataclasses.replace(scenario, seed=seed)
        info = search_info(run_info(resolved, label, seed), options.plan)
        job = EngineJob(
            scenario_to_toml(resolved), address, seed, info, password=resolved.auth.password
        )
        group: EngineGroup | ClusterGroup
        if options.cluster is not None:
            group = await trio.to_thread.run_sync(on_cluster, job, options.cluster)
        else:
            group = EngineGroup(job, options.workers)
        steering = Stopper(group)
        engine = ProcessEngine(group, resolved.load.rate)
        progress = Progress(options.plan, Search(options.plan.ramp))
        console.print(
            f"[bold]smtpbench capacity[/] {escape(scenario.name)} against {escape(label)}"
            f"{escape(describe(group))}: {escape(_plan_line(options.plan))}",
            highlight=False,
        )
        hosts = hosts_of(group)
        for warning in hosts.warnings if hosts is not None else ():
            console.print(f"[yellow]warning: {escape(warning)}[/]", highlight=False)
        group.start()
        try:
            async with trio.open_nursery() as nursery:
                watch = RunWatch(NO_THRESHOLDS, options.keep_going)
                nursery.start_soon(watch_signals, steering, console)
                nursery.start_soon(watch_run, group.snapshot, watch, steering, console)
                nursery.start_soon(drive, engine, progress, _said(console), _step_done(console))
                while not group.done:
                    await trio.sleep(WORKERS_POLL)
                nursery.cancel_scope.cancel()
        finally:
            if not group.done:
                group.abort()
            await trio.to_thread.run_sync(group.close)
    if group.final is None:
        raise EngineFailedError(group.error or "the engine processes did not finish")
    if group.error:
        console.print(f"[red]{escape(group.error)}; the results hold what ran[/]")
    if steering.stop_requested and not engine.stopped_by_search:
        progress.stopped = True
    return progress, group.final, resolved, hosts_of(group)


def _said(console: Console) -> Callable[[str], None]:
    def said(text: str) -> None:
        console.print(escape(text), highlight=False)

    return said


def _step_done(console: Console) -> Callable[[StepResult], None]:
    def step_done(step: StepResult) -> None:
        console.print(step_line(step), highlight=False, soft_wrap=True)

    return step_done


def search_info(info: RunInfo, plan: Plan) -> RunInfo:
    """The run's description says it was a capacity search, and which."""
    ramp = plan.ramp
    load = f"capacity search: {ramp.start:g}/s to {ramp.top:g}/s in steps of {ramp.step:g}/s"
    if ramp.refine:
        load += f", {ramp.refine} bisections"
    return dataclasses.replace(info, load=f"{load}, each {format_duration(plan.step_duration)}")


def _plan_line(plan: Plan) -> str:
    ramp = plan.ramp
    text = f"{ramp.start:g}/s to {ramp.top:g}/s in steps of {ramp.step:g}/s"
    if ramp.refine:
        text += f", then {ramp.refine} bisections"
    criteria = ", ".join(str(t) for t in plan.criteria)
    return (
        f"{text}, each held {format_duration(plan.step_duration)} and judged after "
        f"{format_duration(plan.settle)}; criteria: {criteria}, sessions started"
        f"{' and messages accepted' if plan.messages_per_session else ''} >= "
        f"{plan.reach:.0%} of the rate"
    )


def finish_search(
    options: CapacityOptions,
    progress: Progress,
    final: Snapshot,
    resolved: Scenario,
    hosts: Hosts | None = None,
) -> CapacityOutcome:
    """The results folder (the run's, plus the search's files, and with a cluster its
    figures per host) and the exit code."""
    run = finish_run(
        options.results_base,
        dataclasses.replace(resolved, thresholds=NO_THRESHOLDS),
        final,
        keep_going=options.keep_going,
    )
    if hosts is not None:
        run = with_hosts(run, hosts)
    return complete(run, progress)


def complete(run: RunOutcome, progress: Progress) -> CapacityOutcome:
    """The search's files beside the run's results, and the search's exit code: 0 when
    it found where the rate stops holding (or the top held), 1 when no step held, 3
    when it was stopped first."""
    conclusion = conclude(progress)
    code = run.exit_code
    if run.unwritten is None:
        try:
            write_capacity(run.folder, progress, conclusion)
        except OutputError as err:
            run = dataclasses.replace(run, unwritten=str(err))
            code = exitcodes.RESULTS_NOT_WRITTEN
        except OSError as err:
            run = dataclasses.replace(run, unwritten=f"{run.folder}: {err.strerror or err}")
            code = exitcodes.RESULTS_NOT_WRITTEN
    if code in (exitcodes.OK, exitcodes.INTERRUPTED):
        if progress.stopped:
            code = exitcodes.INTERRUPTED
        elif conclusion.held is None:
            code = exitcodes.THRESHOLDS_FAILED  # not one step held
        else:
            code = exitcodes.OK
    return CapacityOutcome(progress, conclusion, run, code)


def print_capacity(console: Console, outcome: CapacityOutcome) -> None:
    if outcome.progress.steps:
        print_whole(console, steps_table(outcome.progress))
    hosts = outcome.run.hosts
    if hosts is not None:
        print_whole(console, hosts_table(hosts))
        for warning in hosts.warnings:
            console.print(f"[yellow]{escape(warning)}[/]", highlight=False)
    conclusion = outcome.conclusion
    style = {"server": "bold", "above the ramp": "bold green", "machine": "bold yellow"}.get(
        conclusion.limit, "bold red"
    )
    console.print(f"\n[{style}]{escape(conclusion.sentence)}[/]", highlight=False)
    run = outcome.run
    if run.verdict is not None:
        console.print(f"[bold red]{escape(run.verdict)}[/]", highlight=False)
    if run.unwritten is not None:
        console.print(f"[bold red]results not written whole: {escape(run.unwritten)}[/]")
        return
    console.print(f"\nresults written to [bold]{escape(str(run.folder))}[/]", highlight=False)


def run_capacity_headless(options: CapacityOptions, console: Console | None = None) -> int:
    console = console or Console()
    outside = options.workers > 1 or options.cluster is not None
    search = search_with_workers if outside else search_capacity
    try:
        progress, final, resolved, hosts = trio.run(search, options, console)
    except (TargetError, EmbeddedSinkError) as err:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return exitcodes.TARGET_UNUSABLE
    except EngineFailedError as err:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return exitcodes.WORKER_LOST
    except ClusterError as err:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/] {escape(str(err))}", highlight=False
        )
        return exitcodes.CLUSTER_UNUSABLE
    outcome = finish_search(options, progress, final, resolved, hosts)
    print_capacity(console, outcome)
    return outcome.exit_code
