"""The driver's handle on the engine in child processes: one (under the dashboard) or
several workers (``--workers``, headless or dashboard)."""

from __future__ import annotations

from smtpbench.capacity.driver import ProcessCpu
from smtpbench.engine.group import EngineGroup
from smtpbench.engine.process import EngineProcess
from smtpbench.metrics.snapshot import RunState, Snapshot

_ENDING = (RunState.DRAINING, RunState.DONE, RunState.INTERRUPTED)


class ProcessEngine:
    """The driver's handle on an engine process, or on worker processes: control words,
    their (merged) snapshots, the busiest one's CPU time from /proc. The run's clock is
    the latest snapshot's (four a second)."""

    def __init__(self, engine: EngineProcess | EngineGroup, base_rate: float) -> None:
        self.engine = engine
        processes = engine.engines if isinstance(engine, EngineGroup) else [engine]
        self.base_rate = base_rate
        self.factor = 1.0
        self.held = False
        self._stopped = False
        self.cpu = ProcessCpu(lambda: [p.pid for p in processes if p.pid is not None])

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
