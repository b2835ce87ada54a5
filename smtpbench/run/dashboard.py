"""`smtpbench run` on a terminal: the embedded sink or the target, the engine in its
own processes (or on a cluster), the dashboard in this one, and the same results
folder as headless."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from datetime import datetime
from pathlib import Path

from rich.console import Console

from smtpbench import exitcodes
from smtpbench.engine.cluster import ClusterError
from smtpbench.engine.embedded import EmbeddedSinkError
from smtpbench.engine.transport import TargetError
from smtpbench.files import OutputError
from smtpbench.metrics.results import new_results_folder, write_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.outcome import RunOutcome, finish_run, print_outcome, with_hosts
from smtpbench.report.thresholds import ThresholdGuard
from smtpbench.run.engines import hosts_of, outside, where
from smtpbench.run.handle import Engine
from smtpbench.run.options import RunOptions
from smtpbench.run.prepare import prepare
from smtpbench.run.target import open_target_now
from smtpbench.scenario import Scenario, scenario_to_toml
from smtpbench.transit.receiver import ReceiverError
from smtpbench.transit.run import transit_session, with_transit
from smtpbench.tui.app import DashboardApp
from smtpbench.units import format_clock


class ResultsWriter:
    """Writes the run's results once at its end (as headless does: thresholds, session
    records, exit code), and snapshots on request beside them."""

    def __init__(
        self,
        base: Path,
        scenario: Scenario,
        guard: ThresholdGuard | None = None,
        sessions_log: Path | None = None,
        keep_going: bool = False,
    ) -> None:
        self.keep_going = keep_going
        self.base = base
        self.scenario = scenario
        self.guard = guard
        self.sessions_log = sessions_log
        self.outcome: RunOutcome | None = None

    @property
    def final_folder(self) -> Path | None:
        return self.outcome.folder if self.outcome is not None else None

    def __call__(self, snapshot: Snapshot, final: bool) -> Path:
        if final:
            self.outcome = finish_run(
                self.base,
                self.scenario,
                snapshot,
                aborted_by=self.guard.aborted_by if self.guard is not None else None,
                sessions_log=self.sessions_log,
                keep_going=self.keep_going,
            )
            return self.outcome.folder
        at = format_clock(snapshot.elapsed).replace(":", "")
        try:
            folder = new_results_folder(self.base, datetime.now(), f"{self.scenario.name}-at-{at}")
        except OSError as err:
            raise OutputError(f"{self.base}: cannot make a folder in it: {err.strerror}") from None
        write_results(folder, snapshot, scenario_to_toml(self.scenario))
        return folder


def yield_cpu() -> None:
    """Lowers this process's CPU priority as far as an unprivileged process may.

    Linux applies a policy per thread, so every thread already running (the
    readers of the engines' snapshots) is lowered too; threads started later
    inherit it from the main thread.
    """
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, 19)


class HangUp:
    """SIGHUP, a closed terminal: the run stops as with q, and its results are written.

    The handler only points the standard streams at /dev/null (writes to a terminal
    that is gone fail, and the app would wait for its writer forever) and wakes a
    thread, which stops the engine and the app: a signal handler must not wait on
    locks the interrupted code may hold.
    """

    def __init__(self, app: DashboardApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.heard = threading.Event()
        threading.Thread(target=self._stop, name="smtpbench-hang-up", daemon=True).start()

    def __call__(self, signum: int, frame: object) -> None:
        nowhere = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(nowhere, stream)
        os.close(nowhere)
        self.heard.set()

    def _stop(self) -> None:
        self.heard.wait()
        self.engine.interrupt()
        with contextlib.suppress(Exception):  # the app may be gone already
            self.app.call_from_thread(self.app.exit)


def run_dashboard(options: RunOptions) -> int:
    scenario = options.scenario
    stack = contextlib.ExitStack()  # run --through: the receiving sink, until the end
    try:
        address, label, sink = open_target_now(scenario)
    except (TargetError, EmbeddedSinkError) as err:
        print(f"error: {err}")
        return exitcodes.TARGET_UNUSABLE
    try:
        transit = stack.enter_context(transit_session(options.through, options.worker_count))
    except ReceiverError as err:
        if sink is not None:
            sink.stop()
        print(f"error: {err}")
        return exitcodes.TARGET_UNUSABLE
    prepared = prepare(options, address, label, transit)
    resolved = prepared.scenario
    try:
        engine = outside(prepared, options)
    except ClusterError as err:
        if sink is not None:
            sink.stop()
        stack.close()
        print(f"error: {err}")
        return exitcodes.CLUSTER_UNUSABLE
    app = DashboardApp(
        engine,
        thresholds=resolved.thresholds,
        keep_going=options.keep_going,
        transit=transit.line if transit is not None else None,
        where=where(engine),
    )
    writer = ResultsWriter(
        options.results_base,
        resolved,
        app.guard,
        prepared.sessions_log,
        keep_going=options.keep_going,
    )
    app.save = writer
    try:
        engine.start()
        # The engine and the embedded sink were started at normal priority; drawing
        # the screen runs only when they leave a CPU idle (SCHED_IDLE, or the lowest
        # nice value where that policy is missing), so it cannot delay a session.
        yield_cpu()
        signal.signal(signal.SIGHUP, HangUp(app, engine))
        app.run()
        if engine.final is None and not engine.error:
            engine.interrupt()  # the app was left early: finish and keep the results
        final = engine.wait(timeout=scenario.load.grace + 30)
        if final is not None and writer.final_folder is None:
            writer(final, True)
        if transit is not None and writer.outcome is not None:
            figures = transit.drain_blocking(Console())
            writer.outcome = with_transit(writer.outcome, figures)
        hosts = hosts_of(engine)
        if hosts is not None and writer.outcome is not None:
            writer.outcome = with_hosts(writer.outcome, hosts)
    finally:
        engine.close()
        if sink is not None:
            sink.stop()
        stack.close()
    if writer.outcome is None:
        print(f"error: {engine.error or 'the engine did not finish'}")
        return exitcodes.WORKER_LOST if engine.error else exitcodes.INTERRUPTED
    # The final screen is gone with the app: leave the summary in the terminal (if there
    # still is one: after SIGHUP it is gone, and the results folder is what remains).
    with contextlib.suppress(OSError):
        print_outcome(Console(), writer.outcome)
    if engine.error and writer.outcome.unwritten is None:
        print(f"{engine.error}; the results hold what ran")
        return exitcodes.WORKER_LOST
    return writer.outcome.exit_code
