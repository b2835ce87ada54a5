"""A run without the dashboard: embedded sink or target, engine, live lines, summary,
results folder. Ctrl-C or SIGTERM stops scheduling and still writes what ran; a
second one cuts sessions in flight short."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

import trio
from rich.console import Console, Group
from rich.live import Live

from smtpbench import __version__, exitcodes
from smtpbench.engine.control import RunControl
from smtpbench.engine.embedded import EmbeddedSinkError, embedded_sink
from smtpbench.engine.replay import ReplayJob
from smtpbench.engine.runner import LoadRun, SessionRunner
from smtpbench.engine.session import SessionSettings, run_session
from smtpbench.engine.transport import Address, TargetError, resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.results import new_results_folder, write_results
from smtpbench.metrics.sessions import SESSIONS_FILE, SessionLog, SessionTap
from smtpbench.metrics.snapshot import RunInfo, Snapshot
from smtpbench.report.live import live_line, live_panel
from smtpbench.report.summary import summary
from smtpbench.report.thresholds import (
    ThresholdResult,
    all_passed,
    evaluate,
    failing_now,
    live_thresholds,
    thresholds_line,
    thresholds_table,
    write_threshold_results,
)
from smtpbench.scenario import (
    MessageFactory,
    Scenario,
    SessionPlan,
    scenario_to_toml,
    summarize_load,
)

LIVE_REFRESH = 0.25  # seconds between updates of the terminal panel
THRESHOLD_CHECK_INTERVAL = 1.0  # seconds between live threshold checks (abort-on-fail)


@dataclass(frozen=True, slots=True)
class RunOptions:
    scenario: Scenario
    results_base: Path = Path("results")
    progress_interval: float = 2.0  # seconds between lines when not on a terminal
    terminal: bool = False  # draw a live panel instead of printing lines
    record_sessions: bool = False  # write every session's record to sessions.ndjson
    replay: ReplayJob | None = None  # replay recordings instead of the scenario's sessions


@dataclass(frozen=True, slots=True)
class RunOutcome:
    snapshot: Snapshot
    folder: Path
    exit_code: int
    thresholds: tuple[ThresholdResult, ...] = ()
    aborted_by: ThresholdResult | None = None  # the threshold that stopped the run early


@asynccontextmanager
async def open_target(scenario: Scenario) -> AsyncIterator[tuple[Address, str]]:
    """The address to load and how to name it; starts the embedded sink when the scenario
    names no host."""
    if scenario.target.host is None:
        async with embedded_sink(scenario.sink.to_argv()) as (host, port):
            address = await resolve(host, port)
            yield address, f"embedded sink {address}"
    else:
        address = await resolve(scenario.target.host, scenario.target.port)
        yield address, str(address)


def run_info(scenario: Scenario, target: str, seed: int) -> RunInfo:
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
    )


async def _watch_signals(control: RunControl, console: Console) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
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


class ThresholdWatch:
    """Checks a run's thresholds every second from the grace period on, and stops the run
    at the first one that fails for good (``failing_now``); the dashboard can use it too."""

    def __init__(self, run: LoadRun, control: RunControl, console: Console | None = None) -> None:
        self.run = run
        self.control = control
        self.console = console
        self.settings = run.scenario.thresholds
        self.aborted_by: ThresholdResult | None = None

    async def watch(self) -> None:
        settings = self.settings
        if not (settings.abort_on_fail and settings.checks):
            return
        while True:
            await trio.sleep(THRESHOLD_CHECK_INTERVAL)
            snapshot = self.run.snapshot()
            if snapshot.elapsed < settings.abort_grace or self.control.stop_requested:
                continue
            failing = failing_now(evaluate(settings.checks, snapshot))
            if failing:
                self.aborted_by = failing[0]
                if self.console is not None:
                    self.console.print(
                        f"[red]threshold failed: {failing[0].threshold} "
                        f"(measured {failing[0].measured_text}); stopping the run[/]",
                        highlight=False,
                    )
                self.control.interrupt()
                return


async def _show_progress(run: LoadRun, options: RunOptions, console: Console) -> None:
    checks = run.scenario.thresholds.checks
    if options.terminal:
        with Live(console=console, auto_refresh=False, transient=True) as live:
            while True:
                await trio.sleep(LIVE_REFRESH)
                snapshot = run.snapshot()
                panel = live_panel(snapshot, run.remaining())
                if checks:
                    panel = Group(panel, live_thresholds(evaluate(checks, snapshot)))
                live.update(panel, refresh=True)
    while True:
        await trio.sleep(options.progress_interval)
        snapshot = run.snapshot()
        line = live_line(snapshot, run.remaining())
        if checks:
            line += "  " + thresholds_line(evaluate(checks, snapshot))
        console.print(line, highlight=False, soft_wrap=True)


def _session_log(options: RunOptions) -> SessionLog:
    """Sessions are written as they end, beside the results folder that does not exist yet;
    the file moves into it at the end."""
    options.results_base.mkdir(parents=True, exist_ok=True)
    return SessionLog(options.results_base / f".sessions-{os.getpid()}.ndjson.partial")


def _recording_runner(log: SessionLog) -> SessionRunner:
    """Runs each session with a tap in place of the recorder, and logs its record."""

    async def run(
        settings: SessionSettings,
        recorder: Recorder,
        factory: MessageFactory,
        plan: SessionPlan,
        intended: float,
    ) -> None:
        tap = SessionTap(recorder, plan.number, intended - recorder.clock_start)
        try:
            await run_session(settings, cast(Recorder, tap), factory, plan, intended)
        finally:
            log.write(tap.record())

    return run


async def run_load(options: RunOptions, console: Console) -> RunOutcome:
    scenario = options.scenario
    async with open_target(scenario) as (address, target_label):
        factory = MessageFactory(scenario)
        resolved = dataclasses.replace(scenario, seed=factory.seed)
        info = run_info(resolved, target_label, factory.seed)
        replay = options.replay.prepare() if options.replay is not None else None
        recorder = Recorder(replay.run_info(info) if replay is not None else info)
        control = RunControl()
        log = _session_log(options) if options.record_sessions else None
        runner = run_session if log is None else _recording_runner(log)
        if replay is None:
            run = LoadRun(resolved, address, factory, recorder, control, session_runner=runner)
        else:
            run = replay.load_run(resolved, address, factory.seed, recorder, control)
        console.print(
            f"[bold]smtpbench[/] {scenario.name}: {recorder.info.load} against {target_label}",
            highlight=False,
        )
        watch = ThresholdWatch(run, control, console)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, control, console)
            nursery.start_soon(_show_progress, run, options, console)
            nursery.start_soon(watch.watch)
            try:
                final = await run.run()
            finally:
                if log is not None:
                    log.close()
            nursery.cancel_scope.cancel()
    folder = new_results_folder(options.results_base, datetime.now(), scenario.name)
    write_results(folder, final, scenario_to_toml(resolved))
    if log is not None:
        log.path.replace(folder / SESSIONS_FILE)
    results = tuple(evaluate(resolved.thresholds.checks, final))
    if results:
        write_threshold_results(folder, results, watch.aborted_by)
    if watch.aborted_by is not None:
        code = exitcodes.ABORTED_BY_THRESHOLD
    elif control.interrupted:
        code = exitcodes.INTERRUPTED
    elif not all_passed(results):
        code = exitcodes.THRESHOLDS_FAILED
    else:
        code = exitcodes.OK
    return RunOutcome(final, folder, code, results, watch.aborted_by)


def run_headless(options: RunOptions, console: Console | None = None) -> int:
    console = console or Console()
    try:
        outcome = trio.run(run_load, options, console)
    except (TargetError, EmbeddedSinkError) as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.TARGET_UNUSABLE
    console.print(summary(outcome.snapshot))
    if outcome.thresholds:
        console.print(thresholds_table(outcome.thresholds))
    if outcome.aborted_by is not None:
        console.print(
            f"[bold red]stopped early: {outcome.aborted_by.threshold} failed[/]", highlight=False
        )
    console.print(f"\nresults written to [bold]{outcome.folder}[/]", highlight=False)
    return outcome.exit_code


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
