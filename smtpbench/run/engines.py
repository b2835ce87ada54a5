"""Which engine runs a prepared run: the one place that chooses.

Headless with one worker: the engine in the caller's trio loop. Under the dashboard,
the engine in a process of its own (drawing the screen never delays a session).
Several local workers: a group of engine processes. ``--cluster``: a group of
actors on a Dask cluster's workers. All four are read and steered through the one
``EngineHandle``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineJob, EngineProcess, build_run
from smtpbench.metrics.hosts import Hosts
from smtpbench.run.handle import Engine, InProcessEngine
from smtpbench.run.options import RunOptions
from smtpbench.run.prepare import PreparedRun

if TYPE_CHECKING:
    from smtpbench.engine.cluster import ClusterGroup, ClusterSettings


def in_process(prepared: PreparedRun) -> tuple[InProcessEngine, Callable[[], None]]:
    """The engine in this trio loop, and what closes its files once it ended."""
    transit = prepared.transit
    run, close = build_run(
        prepared.job(), prepared.scenario, transit.sends() if transit is not None else None
    )
    return InProcessEngine(run), close


def outside(prepared: PreparedRun, options: RunOptions) -> Engine:
    """The engine in processes of its own: one, a local group, or actors on a cluster."""
    job = prepared.job()
    if options.cluster is not None:
        return on_cluster(job, options.cluster)
    workers = options.worker_count
    return EngineGroup(job, workers) if workers > 1 else EngineProcess(job)


def on_cluster(job: EngineJob, settings: ClusterSettings) -> ClusterGroup:
    """The engines placed on a Dask cluster's workers (``ClusterError`` when it cannot be
    used); blocks while it connects and places them: call it off the trio loop."""
    import logging

    from smtpbench.engine.cluster import ClusterGroup

    # Dask's own logs (a worker lost, a connection retried) would cut through the
    # dashboard and the live lines; the group says what matters, naming the host.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    return ClusterGroup(job, settings)


def describe(engine: Engine | InProcessEngine) -> str:
    """What runs the load, for the header line ("" for this process)."""
    if isinstance(engine, EngineGroup):
        return f", {engine.workers} worker processes"
    from smtpbench.engine.cluster import ClusterGroup

    if isinstance(engine, ClusterGroup):
        return f", {_engines_on_hosts(engine)} of the cluster at {engine.settings.address}"
    return ""


def _engines_on_hosts(group: ClusterGroup) -> str:
    hosts = len({row.hostname for row in group.hosts()})
    return f"{group.workers} engines on {hosts} host{'s' if hosts != 1 else ''}"


def where(engine: Engine | InProcessEngine) -> str:
    """Where the load runs when not on this machine, in a few words for the dashboard's
    header ("" on this machine: the header keeps its room for the clock and the bar)."""
    from smtpbench.engine.cluster import ClusterGroup

    if isinstance(engine, ClusterGroup):
        return f"cluster: {_engines_on_hosts(engine)}"
    return ""


def hosts_of(engine: Engine | InProcessEngine) -> Hosts | None:
    """A cluster run's figures per host; None for a run on this machine."""
    from smtpbench.engine.cluster import ClusterGroup

    if not isinstance(engine, ClusterGroup):
        return None
    return Hosts(engine.settings.address, tuple(engine.hosts()), tuple(engine.warnings))
