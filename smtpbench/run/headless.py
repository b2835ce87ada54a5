"""A run without the dashboard: embedded sink or target, engine, live lines, summary,
results folder. Ctrl-C, SIGTERM or SIGHUP (a closed terminal) stops scheduling and
still writes what ran; a second one cuts sessions in flight short.

With one worker the engine runs in this process's trio loop; with several, in worker
processes; with ``--cluster``, in actors on a Dask cluster. All are driven the same
way, through the engine handle.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

from smtpbench import exitcodes
from smtpbench.engine.cluster import ClusterError
from smtpbench.engine.embedded import EmbeddedSinkError
from smtpbench.engine.transport import TargetError
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.outcome import RunOutcome, finish_run, print_outcome, with_hosts
from smtpbench.report.live import live_line, live_panel
from smtpbench.report.thresholds import evaluate, live_thresholds, thresholds_line
from smtpbench.run.engines import describe, hosts_of, in_process, outside
from smtpbench.run.handle import Engine, EngineHandle, InProcessEngine, drive
from smtpbench.run.options import RunOptions
from smtpbench.run.prepare import prepare
from smtpbench.run.stopping import GRACEFUL, RunWatch, Stopper
from smtpbench.run.target import open_target
from smtpbench.thresholds import Threshold
from smtpbench.transit.receiver import ReceiverError
from smtpbench.transit.run import TransitRun, transit_run, with_transit

LIVE_REFRESH = 0.25  # seconds between updates of the terminal panel
THRESHOLD_CHECK_INTERVAL = 1.0  # seconds between live threshold checks (abort-on-fail)
TARGET_CHECK_INTERVAL = 0.25  # seconds between looks at whether anything connected
STARTING_POLL = 0.05  # seconds between looks for an engine's first snapshot


class EngineFailedError(Exception):
    """The engine ended without results."""


async def watch_signals(stopper: Stopper, console: Console) -> None:
    """Ctrl-C, SIGTERM, SIGHUP: the first stops the run gracefully, the next cuts short."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if stopper.stop() == GRACEFUL:
                console.print(
                    f"[yellow]{name}: stopping; sessions in flight get the grace period "
                    f"(again to cut them short)[/]",
                    highlight=False,
                )
            else:
                console.print(f"[red]{name}: cutting sessions in flight short[/]")


async def watch_run(
    snapshot: Callable[[], Snapshot | None], watch: RunWatch, stopper: Stopper, console: Console
) -> None:
    """Stops the run, saying why, when a threshold failed for good or nothing answers at
    the target."""
    last: Snapshot | None = None
    while watch.active and not stopper.requested:
        await trio.sleep(
            TARGET_CHECK_INTERVAL if watch.watching_target else THRESHOLD_CHECK_INTERVAL
        )
        current = snapshot()
        if current is None or current is last:
            continue
        last = current
        reason = watch.check(current)
        if reason is not None:
            console.print(f"[bold red]{escape(reason.text)}[/]", highlight=False)
            stopper.interrupt()
            return


async def _show_progress(
    engine: EngineHandle,
    checks: tuple[Threshold, ...],
    options: RunOptions,
    console: Console,
    transit: TransitRun | None = None,
) -> None:
    # Starting processes takes a moment, which is not part of the run: lines from the
    # engine's first snapshot on.
    while engine.snapshot() is None:
        await trio.sleep(STARTING_POLL)
    if options.terminal:
        with Live(console=console, auto_refresh=False, transient=True) as live:
            while True:
                await trio.sleep(LIVE_REFRESH)
                snapshot = engine.snapshot()
                if snapshot is None:
                    continue
                panel = live_panel(snapshot, engine.remaining())
                if checks:
                    panel = Group(panel, live_thresholds(evaluate(checks, snapshot)))
                if transit is not None:
                    panel = Group(panel, transit.line())
                live.update(panel, refresh=True)
    while True:
        await trio.sleep(options.progress_interval)
        snapshot = engine.snapshot()
        if snapshot is None:
            continue
        line = live_line(snapshot, engine.remaining())
        if checks:
            line += "  " + thresholds_line(evaluate(checks, snapshot))
        if transit is not None:
            line += "\n  " + transit.line()
        console.print(line, highlight=False, soft_wrap=True)


async def run_load(options: RunOptions, console: Console) -> RunOutcome:
    """The run, from the target's opening to its results folder."""
    scenario = options.scenario
    async with (
        open_target(scenario) as (address, target_label),
        transit_run(options.through, options.worker_count) as transit,
    ):
        prepared = prepare(options, address, target_label, transit)
        close_files: Callable[[], None] | None = None
        engine: Engine | InProcessEngine
        if options.cluster is None and options.worker_count == 1:
            engine, close_files = in_process(prepared)
        else:
            engine = await trio.to_thread.run_sync(outside, prepared, options)
        console.print(
            f"[bold]smtpbench[/] {escape(scenario.name)}: {escape(prepared.info.load)} "
            f"against {escape(target_label)}{escape(describe(engine))}",
            highlight=False,
        )
        hosts = hosts_of(engine)
        for warning in hosts.warnings if hosts is not None else ():
            console.print(f"[yellow]warning: {escape(warning)}[/]", highlight=False)
        stopper = Stopper(engine)
        watch = RunWatch(prepared.scenario.thresholds, options.keep_going)
        checks = prepared.scenario.thresholds.checks
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, stopper, console)
                nursery.start_soon(_show_progress, engine, checks, options, console, transit)
                nursery.start_soon(watch_run, engine.snapshot, watch, stopper, console)
                final = await drive(engine)
                nursery.cancel_scope.cancel()
        finally:
            if close_files is not None:
                close_files()
        figures = None
        if transit is not None and final is not None:
            figures = await transit.drain(console)
    if final is None:
        raise EngineFailedError(engine.error or "the engine processes did not finish")
    if engine.error:
        console.print(f"[red]{escape(engine.error)}; the results hold what ran[/]", highlight=False)
    outcome = finish_run(
        options.results_base,
        prepared.scenario,
        final,
        aborted_by=watch.aborted_by,
        sessions_log=prepared.sessions_log,
        keep_going=options.keep_going,
    )
    if figures is not None:
        outcome = with_transit(outcome, figures)
    hosts = hosts_of(engine)
    if hosts is not None:
        outcome = with_hosts(outcome, hosts)
    if engine.lost_workers and outcome.unwritten is None:
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
    except ClusterError as err:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/] {escape(str(err))}", highlight=False
        )
        return exitcodes.CLUSTER_UNUSABLE
    print_outcome(console, outcome)
    return outcome.exit_code


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
