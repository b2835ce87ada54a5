"""One run in several engine processes, read and steered as one.

``EngineGroup`` has the methods of ``EngineProcess``, so the dashboard and the
headless loop take either. It starts one worker process per share of the load
(``shares.py``), waits until every worker is ready, then gives them all one
start time, so that their schedules interleave as planned and their seconds
line up. Each worker's messages go to a ``WorkerMerge`` as they arrive (in the
workers' reader threads, under one lock); views read the merged snapshot.
Control words go to every worker.

Session records (``--record-sessions``): each worker writes its own file, and
at the end they are joined into the one the run's results take, worker after
worker (each worker's sessions in the order they ended).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import threading
import time
from pathlib import Path

from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.engine.shares import Share
from smtpbench.metrics.intervals import IntervalDelta
from smtpbench.metrics.live_merge import WorkerMerge
from smtpbench.metrics.snapshot import Snapshot

START_MARGIN = 0.1  # seconds from sending the start time to the start: time to reach all


class EngineGroup:
    """Parent side of a run split between ``workers`` engine processes."""

    def __init__(self, job: EngineJob, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a run needs at least one worker, got {workers}")
        self.job = job
        self.workers = workers
        self._lock = threading.Lock()
        self._merge = WorkerMerge(job.info, workers)
        self._final: Snapshot | None = None
        self._error: str | None = None
        self.lost_workers: list[int] = []  # those that died without their final snapshot
        self._done = threading.Event()
        self.engines = [
            EngineProcess(
                dataclasses.replace(
                    job,
                    share=Share(i, workers),
                    sessions_log=self._worker_log(i),
                    transit_log=f"{job.transit_log}.{i}" if job.transit_log else None,
                ),
                listener=functools.partial(self._received, i),
            )
            for i in range(workers)
        ]
        self._starter = threading.Thread(
            target=self._start_together, name="smtpbench-engine-start", daemon=True
        )

    def _worker_log(self, index: int) -> str | None:
        log = self.job.sessions_log
        return f"{log}.{index}" if log is not None else None

    def start(self) -> None:
        """Starts the workers; returns at once (they start together when all are ready)."""
        for engine in self.engines:
            engine.start()
        self._starter.start()

    def _start_together(self) -> None:
        for engine in self.engines:
            while not engine.ready.wait(0.05):
                if engine.done:
                    # A worker failed before it was ready: the others start only to stop.
                    self.interrupt()
                    break
        at = time.monotonic() + START_MARGIN
        for engine in self.engines:
            engine.go(at)

    # -- what the views read ------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        """The workers' latest snapshots merged (the final one once the run is over)."""
        with self._lock:
            return self._final or self._merge.snapshot()

    def remaining(self) -> float | None:
        if self._final is not None:
            return 0.0
        left = [r for e in self.engines if not e.done and (r := e.remaining()) is not None]
        return max(left) if left else None

    @property
    def final(self) -> Snapshot | None:
        return self._final

    @property
    def error(self) -> str | None:
        """Why a worker ended without a final snapshot, if one did."""
        return self._error

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Snapshot | None:
        self._done.wait(timeout)
        return self._final

    def parts(self) -> list[Snapshot | None]:
        """Each worker's own final snapshot (what the merged one adds up)."""
        return [engine.final for engine in self.engines]

    # -- steering -----------------------------------------------------------

    def pause(self) -> None:
        for engine in self.engines:
            engine.pause()

    def resume(self) -> None:
        for engine in self.engines:
            engine.resume()

    def scale_rate(self, factor: float) -> None:
        for engine in self.engines:
            engine.scale_rate(factor)

    def stop(self) -> None:
        for engine in self.engines:
            engine.stop()

    def interrupt(self) -> None:
        for engine in self.engines:
            engine.interrupt()

    def abort(self) -> None:
        for engine in self.engines:
            engine.abort()

    def close(self, timeout: float = 10.0) -> None:
        """Waits for the workers to exit; ends those that do not."""
        deadline = time.monotonic() + timeout
        for engine in self.engines:
            engine.close(max(0.1, deadline - time.monotonic()))

    # -- the workers' reader threads ------------------------------------------

    def _received(
        self, index: int, kind: str, snapshot: Snapshot | None, fresh: list[IntervalDelta]
    ) -> None:
        with self._lock:
            if kind == "lost":
                error = self.engines[index].error or "it ended without results"
                self._error = f"worker {index + 1} of {self.workers}: {error}"
                self.lost_workers.append(index)
                self._merge.lost(index)
                # The run cannot be whole any more: the others stop too, keeping what ran.
                for i, engine in enumerate(self.engines):
                    if i != index:
                        engine.interrupt()
            elif snapshot is not None:
                self._merge.add(index, snapshot, fresh, final=kind == "final")
            if self._merge.done and not self._done.is_set():
                self._join_logs()
                self._final = self._merge.final()
                self._done.set()

    def _join_logs(self) -> None:
        if self.job.sessions_log is None:
            return
        with Path(self.job.sessions_log).open("wb") as joined:
            for i in range(self.workers):
                part = Path(self._worker_log(i) or "")
                if part.is_file():
                    with part.open("rb") as records:
                        shutil.copyfileobj(records, joined)
                    part.unlink()
