"""A capacity search under the dashboard: the engine in its own process (as for ``run``
on a terminal), the driver in a thread of this process steering it with control words,
the dashboard showing the run with the search's step, rate and phase under its header;
the step table and the conclusion printed when it is left."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading

import trio
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.capacity.driver import Progress, drive
from smtpbench.capacity.headless import (
    CapacityOptions,
    complete,
    print_capacity,
    search_info,
)
from smtpbench.capacity.processes import ProcessEngine
from smtpbench.capacity.search import Search
from smtpbench.engine.cluster import ClusterError, ClusterGroup
from smtpbench.engine.embedded import EmbeddedSinkError
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.engine.transport import TargetError
from smtpbench.metrics.snapshot import RunState
from smtpbench.outcome import with_hosts
from smtpbench.run.dashboard import HangUp, ResultsWriter, yield_cpu
from smtpbench.run.engines import hosts_of, on_cluster, where
from smtpbench.run.prepare import run_info
from smtpbench.run.target import open_target_now
from smtpbench.scenario import run_seed, scenario_to_toml
from smtpbench.thresholds import NO_THRESHOLDS
from smtpbench.tui.capacity import CapacityDashboard


def start_driver(handle: ProcessEngine, progress: Progress) -> threading.Thread:
    """The driver in a thread with its own trio loop."""
    thread = threading.Thread(
        target=trio.run, args=(drive, handle, progress), name="smtpbench-capacity", daemon=True
    )
    thread.start()
    return thread


def run_capacity_dashboard(options: CapacityOptions) -> int:
    scenario = options.scenario
    try:
        address, label, sink = open_target_now(scenario)
    except (TargetError, EmbeddedSinkError) as err:
        print(f"error: {err}")
        return exitcodes.TARGET_UNUSABLE
    seed = run_seed(scenario)
    resolved = dataclasses.replace(scenario, seed=seed, thresholds=NO_THRESHOLDS)
    info = search_info(run_info(resolved, label, seed), options.plan)
    job = EngineJob(
        scenario_to_toml(resolved), address, seed, info, password=resolved.auth.password
    )
    workers = options.workers
    engine: EngineProcess | EngineGroup | ClusterGroup
    if options.cluster is not None:
        try:
            engine = on_cluster(job, options.cluster)
        except ClusterError as err:
            if sink is not None:
                sink.stop()
            print(f"error: {err}")
            return exitcodes.CLUSTER_UNUSABLE
    else:
        engine = EngineGroup(job, workers) if workers > 1 else EngineProcess(job)
    progress = Progress(options.plan, Search(options.plan.ramp))
    handle = ProcessEngine(engine, resolved.load.rate)
    app = CapacityDashboard(
        engine, keep_going=options.keep_going, status=progress.status, where=where(engine)
    )
    writer = ResultsWriter(options.results_base, resolved, keep_going=options.keep_going)
    app.save = writer
    try:
        engine.start()
        driver = start_driver(handle, progress)
        yield_cpu()
        signal.signal(signal.SIGHUP, HangUp(app, engine))
        app.run()
        if engine.final is None and not engine.error:
            engine.interrupt()  # the app was left early: finish and keep the results
        final = engine.wait(timeout=scenario.load.grace + 30)
        if final is not None and writer.final_folder is None:
            writer(final, True)
        driver.join(timeout=10)
        hosts = hosts_of(engine)
        if hosts is not None and writer.outcome is not None:
            writer.outcome = with_hosts(writer.outcome, hosts)
    finally:
        engine.close()
        if sink is not None:
            sink.stop()
    if writer.outcome is None:
        print(f"error: {engine.error or 'the engine did not finish'}")
        return exitcodes.WORKER_LOST if engine.error else exitcodes.INTERRUPTED
    if progress.phase != "done" or (engine.final and engine.final.state is RunState.INTERRUPTED):
        progress.stopped = progress.stopped or progress.search.next_rate() is not None
    outcome = complete(writer.outcome, progress)
    with contextlib.suppress(OSError):
        print_capacity(Console(), outcome)
    return outcome.exit_code
