"""The one handle every front end holds on a running engine.

Four engines implement it: the engine in this process's trio loop
(``InProcessEngine``, headless with one worker), the engine in a process of its
own (``EngineProcess``), a group of local worker processes (``EngineGroup``)
and a group of actors on a Dask cluster (``ClusterGroup``). The dashboard and
headless mode read and steer any of them through ``EngineHandle``; ``drive``
runs any of them to its end from a trio loop.
"""

from __future__ import annotations

from typing import Protocol

import trio

from smtpbench.engine.control import RunControl
from smtpbench.engine.runner import LoadRun
from smtpbench.metrics.snapshot import Snapshot

POLL = 0.05  # seconds between looks at whether an engine outside this loop is done


class EngineHandle(Protocol):
    """What views read and steer. Non-blocking: every method returns at once, whatever
    the engine is doing."""

    def snapshot(self) -> Snapshot | None: ...
    def remaining(self) -> float | None: ...

    @property
    def final(self) -> Snapshot | None: ...

    @property
    def error(self) -> str | None: ...

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def scale_rate(self, factor: float) -> None: ...
    def interrupt(self) -> None: ...
    def abort(self) -> None: ...


class Engine(EngineHandle, Protocol):
    """An engine outside this trio loop (a process, local workers, cluster actors):
    started, then watched until done, then closed."""

    @property
    def done(self) -> bool: ...

    @property
    def lost_workers(self) -> list[int]: ...

    def start(self) -> None: ...
    def wait(self, timeout: float | None = None) -> Snapshot | None: ...
    def close(self, timeout: float = 10.0) -> None: ...


class InProcessEngine:
    """A ``LoadRun`` in the caller's trio loop, behind the same handle. Its control
    words must come from that loop (signals and watchers do)."""

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.control: RunControl = run.control
        self._final: Snapshot | None = None
        self.lost_workers: list[int] = []

    def snapshot(self) -> Snapshot | None:
        return self._final or self.run.snapshot()

    def remaining(self) -> float | None:
        return 0.0 if self._final is not None else self.run.remaining()

    @property
    def final(self) -> Snapshot | None:
        return self._final

    @property
    def error(self) -> str | None:
        return None

    @property
    def done(self) -> bool:
        return self._final is not None

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def scale_rate(self, factor: float) -> None:
        self.control.scale_rate(factor)

    def interrupt(self) -> None:
        self.control.interrupt()

    def abort(self) -> None:
        self.control.abort()

    async def run_to_end(self) -> Snapshot:
        self._final = await self.run.run()
        return self._final


async def drive(engine: Engine | InProcessEngine) -> Snapshot | None:
    """Runs the engine to its end from this trio loop; its final snapshot, or None when
    it ended without one (its ``error`` says why). An engine outside this loop is
    stopped and closed if this returns early (an error, a cancel)."""
    if isinstance(engine, InProcessEngine):
        return await engine.run_to_end()
    engine.start()
    try:
        while not engine.done:
            await trio.sleep(POLL)
    finally:
        if not engine.done:
            engine.abort()  # leaving early: the engine stops too
        await trio.to_thread.run_sync(engine.close)
    return engine.final
