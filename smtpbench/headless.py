"""A run without the dashboard: embedded sink or target, engine, live lines, summary,
results folder. Ctrl-C, SIGTERM or SIGHUP (a closed terminal) stops scheduling and
still writes what ran; a second one cuts sessions in flight short.

With one worker the engine runs in this process's trio loop. With several, it
runs in worker processes (``EngineGroup``) that this loop polls for the merged
snapshot and steers with control words; the rest is the same.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

from smtpbench import __version__, exitcodes
from smtpbench.engine.control import RunControl
from smtpbench.engine.embedded import EmbeddedSinkError, embedded_sink
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineJob
from smtpbench.engine.replay import ReplayJob
from smtpbench.engine.runner import LoadRun
from smtpbench.engine.session_records import partial_log_path, records_to
from smtpbench.engine.shares import worker_count
from smtpbench.engine.targets import check_connections
from smtpbench.engine.transport import Address, TargetError, resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.sessions import SessionLog
from smtpbench.metrics.snapshot import RunInfo, Snapshot
from smtpbench.outcome import RunOutcome, finish_run, print_outcome
from smtpbench.protocol.steps import Step
from smtpbench.report.live import live_line, live_panel
from smtpbench.report.reachability import KEEP_GOING_HINT, unreachable
from smtpbench.report.thresholds import (
    ThresholdGuard,
    ThresholdResult,
    evaluate,
    live_thresholds,
    thresholds_line,
)
from smtpbench.scenario import (
    MessageFactory,
    Scenario,
    scenario_to_toml,
    summarize_load,
)
from smtpbench.thresholds import Threshold, ThresholdSettings
from smtpbench.transit.receiver import ReceiverError
from smtpbench.transit.run import TransitOptions, TransitRun, transit_run, with_transit
from smtpbench.units import format_clock

LIVE_REFRESH = 0.25  # seconds between updates of the terminal panel
THRESHOLD_CHECK_INTERVAL = 1.0  # seconds between live threshold checks (abort-on-fail)
TARGET_CHECK_INTERVAL = 0.25  # seconds between looks at whether anything connected
WORKERS_POLL = 0.05  # seconds between looks at whether worker processes are done


@dataclass(frozen=True, slots=True)
class RunOptions:
    scenario: Scenario
    results_base: Path = Path("results")
    progress_interval: float = 2.0  # seconds between lines when not on a terminal
    terminal: bool = False  # draw a live panel instead of printing lines
    record_sessions: bool = False  # write every session's record to sessions.ndjson
    replay: ReplayJob | None = None  # replay recordings instead of the scenario's sessions
    workers: int = 1  # engine processes; 1 runs the engine in this process
    keep_going: bool = False  # run on when no session can connect
    through: TransitOptions | None = None  # run --through: the receiving sink's address

    @property
    def worker_count(self) -> int:
        """The workers the load can use: at most ``workers``, never more than the sessions
        in flight it allows or the sessions it starts."""
        return worker_count(self.scenario.load, self.workers)


class EngineFailedError(Exception):
    """The worker processes ended without results."""


class Steering(Protocol):
    """What signals and thresholds stop: a ``RunControl``, or worker processes."""

    @property
    def stop_requested(self) -> bool: ...

    def interrupt(self) -> None: ...
    def abort(self) -> None: ...


class GroupSteering:
    """Stops worker processes; remembers that it did."""

    def __init__(self, group: EngineGroup) -> None:
        self.group = group
        self.stop_requested = False

    def interrupt(self) -> None:
        self.stop_requested = True
        self.group.interrupt()

    def abort(self) -> None:
        self.stop_requested = True
        self.group.abort()


class LiveSource(Protocol):
    def snapshot(self) -> Snapshot | None: ...
    def remaining(self) -> float | None: ...


@asynccontextmanager
async def open_target(scenario: Scenario) -> AsyncIterator[tuple[Address, str]]:
    """The address to load and how to name it; starts the embedded sink when the scenario
    names no host."""
    if scenario.target.host is None:
        async with embedded_sink(scenario.sink.to_argv()) as (host, port):
            address = await resolve(host, port)
            check_connections(
                scenario.target, address, scenario.client.addresses if scenario.client.proxy else ()
            )
            yield address, f"embedded sink {address}"
    else:
        address = await resolve(scenario.target.host, scenario.target.port)
        check_connections(
            scenario.target, address, scenario.client.addresses if scenario.client.proxy else ()
        )
        yield address, str(address)


def run_info(
    scenario: Scenario, target: str, seed: int, transit: TransitRun | None = None
) -> RunInfo:
    """What the results say of the run; with ``--through`` its id is the one the messages
    carry."""
    load = scenario.load
    return RunInfo(
        scenario=scenario.name,
        target=target,
        load=summarize_load(scenario),
        mode=load.mode,
        planned_duration=load.duration,
        planned_sessions=load.sessions,
        seed=seed,
        started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        version=__version__,
        run_id=transit.run_tag if transit is not None else uuid.uuid4().hex,
        delivery=scenario.delivery.mode,
    )


async def _watch_signals(control: Steering, console: Console) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not control.stop_requested:
                console.print(
                    f"[yellow]{name}: stopping; sessions in flight get the grace period "
                    f"(again to cut them short)[/]",
                    highlight=False,
                )
                control.interrupt()
            else:
                console.print(f"[red]{name}: cutting sessions in flight short[/]")
                control.abort()


async def watch_target(
    snapshot: Callable[[], Snapshot | None], control: Steering, console: Console
) -> None:
    """Stops the run, with a plain sentence, once it is clear that nothing answers at the
    target: a few connects failed and none succeeded."""
    while not control.stop_requested:
        await trio.sleep(TARGET_CHECK_INTERVAL)
        current = snapshot()
        if current is None:
            continue
        if current.latency_count(Step.CONNECT):
            return  # something answered: the rest is the run's to measure
        reason = unreachable(current)
        if reason is not None:
            console.print(
                f"[bold red]{escape(reason)}; stopping the run ({KEEP_GOING_HINT})[/]",
                highlight=False,
            )
            control.interrupt()
            return


class ThresholdWatch:
    """Feeds the run's snapshots to a ``ThresholdGuard`` every second and stops the run
    when it says a threshold failed for good."""

    def __init__(
        self,
        settings: ThresholdSettings,
        snapshot: Callable[[], Snapshot | None],
        control: Steering,
        console: Console | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.control = control
        self.console = console
        self.guard = ThresholdGuard(settings)

    @property
    def aborted_by(self) -> ThresholdResult | None:
        return self.guard.aborted_by

    async def watch(self) -> None:
        if not self.guard.active:
            return
        while not self.control.stop_requested:
            await trio.sleep(THRESHOLD_CHECK_INTERVAL)
            snapshot = self.snapshot()
            if snapshot is None:
                continue
            failed = self.guard.check(snapshot)
            if failed is not None:
                if self.console is not None:
                    self.console.print(
                        f"[red]threshold failed: {failed.threshold} (measured "
                        f"{failed.measured_text} at {format_clock(snapshot.elapsed)}; the "
                        "thresholds table measures the whole run); stopping the run[/]",
                        highlight=False,
                    )
                self.control.interrupt()
                return


async def _show_progress(
    run: LiveSource,
    checks: tuple[Threshold, ...],
    options: RunOptions,
    console: Console,
    transit: TransitRun | None = None,
) -> None:
    if options.terminal:
        with Live(console=console, auto_refresh=False, transient=True) as live:
            while True:
                await trio.sleep(LIVE_REFRESH)
                snapshot = run.snapshot()
                if snapshot is None:
                    continue
                panel = live_panel(snapshot, run.remaining())
                if checks:
                    panel = Group(panel, live_thresholds(evaluate(checks, snapshot)))
                if transit is not None:
                    panel = Group(panel, transit.line())
                live.update(panel, refresh=True)
    while True:
        await trio.sleep(options.progress_interval)
        snapshot = run.snapshot()
        if snapshot is None:
            continue
        line = live_line(snapshot, run.remaining())
        if checks:
            line += "  " + thresholds_line(evaluate(checks, snapshot))
        if transit is not None:
            line += "\n  " + transit.line()
        console.print(line, highlight=False, soft_wrap=True)


async def _show_progress_once_started(
    group: EngineGroup,
    checks: tuple[Threshold, ...],
    options: RunOptions,
    console: Console,
    transit: TransitRun | None = None,
) -> None:
    """Live lines from the workers' first snapshot on: starting processes takes a moment,
    which is not part of the run."""
    while group.snapshot() is None:
        await trio.sleep(WORKERS_POLL)
    await _show_progress(group, checks, options, console, transit)


async def run_load(options: RunOptions, console: Console) -> RunOutcome:
    if options.worker_count > 1:
        return await run_load_workers(options, console)
    scenario = options.scenario
    workers = options.worker_count
    async with (
        open_target(scenario) as (address, target_label),
        transit_run(options.through, workers) as transit,
    ):
        factory = MessageFactory(scenario)
        resolved = dataclasses.replace(scenario, seed=factory.seed)
        info = run_info(resolved, target_label, factory.seed, transit)
        replay = options.replay.prepare() if options.replay is not None else None
        recorder = Recorder(replay.run_info(info) if replay is not None else info)
        control = RunControl()
        log = (
            SessionLog(partial_log_path(options.results_base)) if options.record_sessions else None
        )
        events_for = records_to(log, recorder) if log is not None else None
        sends = transit.sends() if transit is not None else None
        factory.transit_tag = info.run_id if transit is not None else None
        if replay is None:
            run = LoadRun(
                resolved, address, factory, recorder, control, events_for=events_for, transit=sends
            )
        else:
            run = replay.load_run(
                resolved, address, factory.seed, recorder, control, events_for=events_for
            )
        console.print(
            f"[bold]smtpbench[/] {scenario.name}: {recorder.info.load} against {target_label}",
            highlight=False,
        )
        watch = ThresholdWatch(resolved.thresholds, run.snapshot, control, console)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, control, console)
            nursery.start_soon(
                _show_progress, run, resolved.thresholds.checks, options, console, transit
            )
            nursery.start_soon(watch.watch)
            if not options.keep_going:
                nursery.start_soon(watch_target, run.snapshot, control, console)
            try:
                final = await run.run()
            finally:
                if log is not None:
                    log.close()
                if sends is not None:
                    sends.close()
            nursery.cancel_scope.cancel()
        figures = await transit.drain(console) if transit is not None else None
    outcome = finish_run(
        options.results_base,
        resolved,
        final,
        aborted_by=watch.aborted_by,
        sessions_log=log.path if log is not None else None,
        keep_going=options.keep_going,
    )
    return with_transit(outcome, figures) if figures is not None else outcome


async def run_load_workers(options: RunOptions, console: Console) -> RunOutcome:
    """The run in ``options.worker_count`` engine processes, shown and steered from here."""
    scenario = options.scenario
    workers = options.worker_count
    async with (
        open_target(scenario) as (address, target_label),
        transit_run(options.through, workers) as transit,
    ):
        seed = MessageFactory(scenario).seed
        resolved = dataclasses.replace(scenario, seed=seed)
        info = run_info(resolved, target_label, seed, transit)
        if options.replay is not None:
            info = options.replay.prepare().run_info(info)
        log = partial_log_path(options.results_base) if options.record_sessions else None
        job = EngineJob(
            scenario_to_toml(resolved),
            address,
            seed,
            info,
            sessions_log=str(log) if log is not None else None,
            replay=options.replay,
            password=resolved.auth.password,
            transit_log=str(transit.log) if transit is not None else None,
        )
        group = EngineGroup(job, workers)
        steering = GroupSteering(group)
        watch = ThresholdWatch(resolved.thresholds, group.snapshot, steering, console)
        console.print(
            f"[bold]smtpbench[/] {scenario.name}: {info.load} against {target_label}, "
            f"{workers} worker processes",
            highlight=False,
        )
        group.start()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_signals, steering, console)
                nursery.start_soon(
                    _show_progress_once_started,
                    group,
                    resolved.thresholds.checks,
                    options,
                    console,
                    transit,
                )
                nursery.start_soon(watch.watch)
                if not options.keep_going:
                    nursery.start_soon(watch_target, group.snapshot, steering, console)
                while not group.done:
                    await trio.sleep(WORKERS_POLL)
                nursery.cancel_scope.cancel()
        finally:
            if not group.done:
                group.abort()  # leaving early (an error here): the workers stop too
            await trio.to_thread.run_sync(group.close)
        figures = None
        if transit is not None and group.final is not None:
            figures = await transit.drain(console)
    if group.final is None:
        raise EngineFailedError(group.error or "the engine processes did not finish")
    if group.error:
        console.print(f"[red]{group.error}; the results hold what ran[/]", highlight=False)
    outcome = finish_run(
        options.results_base,
        resolved,
        group.final,
        aborted_by=watch.aborted_by,
        sessions_log=log,
        keep_going=options.keep_going,
    )
    if figures is not None:
        outcome = with_transit(outcome, figures)
    if group.lost_workers and outcome.unwritten is None:
        outcome = dataclasses.replace(outcome, exit_code=exitcodes.WORKER_LOST)
    return outcome


def run_headless(options: RunOptions, console: Console | None = None) -> int:
    console = console or Console()
    try:
        outcome = trio.run(run_load, options, console)
    except (TargetError, EmbeddedSinkError, ReceiverError) as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.TARGET_UNUSABLE
    except EngineFailedError as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.WORKER_LOST
    print_outcome(console, outcome)
    return outcome.exit_code


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
