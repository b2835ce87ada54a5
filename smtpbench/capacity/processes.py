"""The driver's handle on the engine outside this process: one process (under the
dashboard), several workers (``--workers``), or engines on a Dask cluster's workers
(``--cluster``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from smtpbench.capacity.driver import ProcessCpu
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineProcess
from smtpbench.metrics.snapshot import RunState, Snapshot

if TYPE_CHECKING:
    from smtpbench.engine.cluster import ClusterGroup

_ENDING = (RunState.DRAINING, RunState.DONE, RunState.INTERRUPTED)


class _Cpu(Protocol):
    def seconds(self) -> float | None: ...
    def waited(self) -> float | None: ...


class ClusterCpu:
    """The busiest engine's CPU time on a cluster, as its host last reported it (the
    whole engine process, every thread); the wait for a CPU is not reported: None."""

    def __init__(self, group: ClusterGroup) -> None:
        self.group = group

    def seconds(self) -> float | None:
        used = [row.cpu_seconds for row in self.group.hosts() if not row.lost]
        if not used or any(value is None for value in used):
            return None
        return max(value for value in used if value is not None)

    def waited(self) -> float | None:
        return None


def _cpu_of(engine: EngineProcess | EngineGroup | ClusterGroup) -> _Cpu:
    if isinstance(engine, EngineProcess | EngineGroup):
        processes = engine.engines if isinstance(engine, EngineGroup) else [engine]
        return ProcessCpu(lambda: [p.pid for p in processes if p.pid is not None])
    return ClusterCpu(engine)


class ProcessEngine:
    """The driver's handle on an engine process, on worker processes, or on a cluster's
    engines: control words, their (merged) snapshots, the busiest one's CPU time. The
    run's clock is the latest snapshot's (four a second)."""

    def __init__(
        self, engine: EngineProcess | EngineGroup | ClusterGroup, base_rate: float
    ) -> None:
        self.engine = engine
        self.base_rate = base_rate
        self.factor = 1.0
        self.held = False
        self._stopped = False
        self.cpu = _cpu_of(engine)

    def elapsed(self) -> float | None:
        snapshot = self.engine.snapshot()
        return None if snapshot is None else snapshot.elapsed

    def snapshot(self) -> Snapshot | None:
        return self.engine.snapshot()

    def set_rate(self, rate: float) -> None:
        factor = rate / self.base_rate
        if factor != self.factor:
            self.engine.scale_rate(factor / self.factor)
            self.factor = factor
        if self.held:
            self.engine.resume()
            self.held = False

    def hold(self) -> None:
        self.engine.pause()
        self.held = True

    def cpu_seconds(self) -> float | None:
        return self.cpu.seconds()

    def cpu_waited(self) -> float | None:
        return self.cpu.waited()

    def stop(self) -> None:
        self._stopped = True
        self.engine.stop()

    @property
    def stopped_by_search(self) -> bool:
        """Whether the search, not a signal or a key, stopped the run."""
        return self._stopped

    @property
    def stop_requested(self) -> bool:
        if self._stopped or self.engine.final is not None or self.engine.error:
            return True
        snapshot = self.engine.snapshot()
        return snapshot is not None and snapshot.state in _ENDING
