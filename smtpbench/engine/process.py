"""The load engine in a process of its own, steered and watched through a pipe.

The dashboard runs in the parent; the engine's trio loop runs here in a child,
so drawing the screen never delays a session (no shared event loop, no shared
GIL). The child publishes a frozen ``Snapshot`` several times a second and a
final one at the end; the parent sends control words back (pause, resume,
scale, stop, interrupt, abort). The scenario crosses as TOML text, the form it
is saved in anyway, so nothing but plain data is pickled on the way in.

A worker of a group (``group.py``: the job has a ``Share``) says when it is
ready and starts at the time the parent sends back, so that all workers share
one start; with each snapshot it also sends the one-second intervals it closed
since the last (end, sparse latency and reply counts), which the parent adds up.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from smtpbench.engine.control import RunControl
from smtpbench.engine.runner import LoadRun
from smtpbench.engine.shares import Share
from smtpbench.engine.snapshot_wire import Packer, Unpacker
from smtpbench.engine.transport import Address
from smtpbench.lifeline import die_with_parent
from smtpbench.metrics.intervals import IntervalDelta
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunInfo, Snapshot

if TYPE_CHECKING:
    from smtpbench.engine.replay import PreparedReplay
    from smtpbench.scenario import Scenario
    from smtpbench.transit.sends import TransitSends

PUBLISH_INTERVAL = 0.25  # seconds between snapshots sent to the parent
CONTROL_WORDS = frozenset({"pause", "resume", "scale_rate", "stop", "interrupt", "abort"})

# What the child sends: (kind, snapshot, seconds remaining, intervals closed since the last
# message); kind is "ready" (a worker waiting for its start), "snapshot" or "final", or
# "error" (its run could not be built: why, in place of the seconds remaining).
Message = tuple[str, Snapshot | None, float | str | None, list[IntervalDelta]]
# Told of every message in the reader thread; kind "lost" when the child ended without a
# final snapshot.
Listener = Callable[[str, Snapshot | None, list[IntervalDelta]], None]


@dataclass(frozen=True, slots=True)
class EngineJob:
    """Everything the child needs, as plain data."""

    scenario_toml: str
    address: Address
    seed: int
    info: RunInfo
    publish_interval: float = PUBLISH_INTERVAL
    sessions_log: str | None = None  # where per-session records go (run --record-sessions)
    # Recordings to replay instead of the scenario's sessions, read and merged once by the
    # parent: a worker, here or on another host, needs none of their files.
    replay: PreparedReplay | None = None
    share: Share | None = None  # a worker of a group: its share of the load
    transit_log: str | None = None  # run --through: where accepted messages are noted
    # A password given in the scenario file: the TOML never holds it, so it crosses alone.
    password: str | None = field(default=None, repr=False)
    # A cluster run: the files the scenario names, (path, bytes), for hosts without them
    # (``job_files.py``); empty on this machine, where the engine reads them in place.
    files: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)


class EngineProcess:
    """Parent side: start, read snapshots, steer, wait for the final snapshot."""

    def __init__(self, job: EngineJob, listener: Listener | None = None) -> None:
        self.job = job
        self._listener = listener
        self.ready = threading.Event()  # a worker: set when it waits for its start
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=engine_main, args=(child_conn, job), name="smtpbench-engine", daemon=True
        )
        self._child_conn = child_conn
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._remaining: float | None = job.info.planned_duration
        self._final: Snapshot | None = None
        self._error: str | None = None
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name="smtpbench-engine-reader")
        self._reader.daemon = True

    def start(self) -> None:
        with _bare_main():
            self._process.start()
        self._child_conn.close()  # the child holds its end; EOF reaches us if it dies
        self._reader.start()

    # -- what the views read ------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        """The latest snapshot (the final one once the run is over)."""
        return self._final or self._latest

    def remaining(self) -> float | None:
        return self._remaining

    @property
    def final(self) -> Snapshot | None:
        return self._final

    @property
    def error(self) -> str | None:
        """Why the engine ended without a final snapshot, if it did."""
        return self._error

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def lost_workers(self) -> list[int]:
        """[0] once the engine ended without its final snapshot (as a group says)."""
        return [0] if self._done.is_set() and self._final is None else []

    @property
    def pid(self) -> int | None:
        """The engine process's id once started (what its CPU time is read by)."""
        return self._process.pid

    def wait(self, timeout: float | None = None) -> Snapshot | None:
        self._done.wait(timeout)
        return self._final

    # -- steering -----------------------------------------------------------

    def _send(self, word: str, *args: Any) -> None:
        if self._done.is_set():
            return
        # A child that is gone cannot be steered; the reader thread reports it.
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send((word, args))

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def scale_rate(self, factor: float) -> None:
        self._send("scale_rate", factor)

    def stop(self) -> None:
        self._send("stop")

    def interrupt(self) -> None:
        self._send("interrupt")

    def abort(self) -> None:
        self._send("abort")

    def go(self, at: float) -> None:
        """A worker: start at ``at``, a ``time.monotonic()`` reading (the same clock in
        every process of the machine)."""
        self._send("go", at)

    def close(self, timeout: float = 10.0) -> None:
        """Waits for the child to exit (after its final snapshot); ends it if it does not."""
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def _lost(self) -> str:
        """What to say of a child that ended without its final snapshot: its process id,
        how it ended, and what its last snapshot had started."""
        self._process.join(2)  # the pipe closes as it dies: a moment for its exit status
        code = self._process.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        said = f"engine process {self._process.pid} {how}"
        latest = self._latest
        if latest is None:
            return f"{said} before its first snapshot"
        return (
            f"{said}; it had started {latest.counters.started:,} sessions by its last "
            f"snapshot, {latest.elapsed:.1f}s in; what it did after that is missing"
        )

    # -- the reader thread --------------------------------------------------

    def _read(self) -> None:
        unpacker = Unpacker()
        try:
            while True:
                kind, packed, remaining, fresh = self._conn.recv()
                if kind == "error":  # it could not build its run: nothing ran
                    self._process.join(2)
                    pid = self._process.pid
                    self._error = f"engine process {pid} could not start: {remaining}"
                    if self._listener is not None:
                        self._listener("lost", None, [])
                    break
                snapshot = unpacker.unpack(packed)
                if kind == "ready":
                    self.ready.set()
                    continue
                if self._listener is not None:
                    self._listener(kind, snapshot, fresh)
                if kind == "final":
                    self._final = snapshot
                    self._remaining = 0.0
                    break
                self._latest = snapshot
                self._remaining = remaining
        except (EOFError, OSError):
            self._error = self._lost()
            if self._listener is not None:
                self._listener("lost", None, [])
        finally:
            self._done.set()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """While a child is spawned, a ``__main__`` with no file: the engine needs nothing
    of the program that started it, and a spawned child would import its main module
    again (a Dask worker's is the whole of Dask: half a second and tens of megabytes in
    every engine of a cluster run)."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def build_run(
    job: EngineJob, scenario: Scenario | None = None, transit: TransitSends | None = None
) -> tuple[LoadRun, Callable[[], None]]:
    """The one place a job becomes a run, in an engine process or in the caller's loop:
    the scenario (parsed from the job unless given), the message factory, the recorder,
    session records, and the scenario's sessions or the replay; and what closes the
    run's files once it ended. ``transit``: where a run in this process notes its sends
    (an engine process opens the job's ``transit_log`` itself)."""
    from smtpbench.engine.session_records import records_to
    from smtpbench.metrics.sessions import SessionLog
    from smtpbench.scenario import MessageFactory, parse_scenario
    from smtpbench.transit.sends import TransitSends

    if scenario is None:
        scenario = parse_scenario(job.scenario_toml, default_name=job.info.scenario)
        if job.password is not None:
            scenario = replace(scenario, auth=replace(scenario.auth, password=job.password))
    if transit is None and job.transit_log:
        transit = TransitSends(Path(job.transit_log))
    factory = MessageFactory(
        scenario, seed=job.seed, transit_tag=job.info.run_id if transit is not None else None
    )
    recorder = Recorder(job.info, live_intervals=job.share is not None)
    log = SessionLog(Path(job.sessions_log)) if job.sessions_log else None
    events_for = records_to(log, recorder) if log is not None else None
    control = RunControl()
    if job.replay is not None:
        run = job.replay.load_run(
            scenario,
            job.address,
            job.seed,
            recorder,
            control,
            events_for=events_for,
            share=job.share,
        )
    else:
        run = LoadRun(
            scenario,
            job.address,
            factory,
            recorder,
            control,
            events_for=events_for,
            share=job.share,
            transit=transit,
        )

    def close() -> None:
        if log is not None:
            log.close()
        if transit is not None:
            transit.close()

    return run, close


def engine_main(conn: Connection, job: EngineJob) -> None:
    """Child side entry point."""
    # The parent owns Ctrl-C and a closed terminal, and turns them into an "interrupt" word;
    # when the parent dies, so does this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)
    try:
        run, close = build_run(job)
    except Exception as err:  # told to the parent, which names this engine and its host
        ours = type(err).__module__.startswith("smtpbench") or isinstance(
            err, (OSError, ValueError)
        )
        detail = str(err) if ours and str(err) else f"{type(err).__name__}: {err}"
        conn.send(("error", None, detail, []))
        conn.close()
        sys.exit(1)
    try:
        final = trio.run(_serve, conn, run, job.publish_interval, job.share is not None)
    finally:
        close()
    message: Message = ("final", final, 0.0, run.recorder.take_intervals())
    conn.send(message)
    conn.close()


async def _serve(conn: Connection, run: LoadRun, interval: float, worker: bool) -> Snapshot:
    send_lock = trio.Lock()
    start_at: float | None = None
    go = trio.Event()

    async def send(message: Message) -> None:
        # Pickling and writing a snapshot takes a moment: keep it off the event loop. Shielded:
        # the intervals taken for this message must reach the parent, even at the end.
        with trio.CancelScope(shield=True):
            async with send_lock:
                await trio.to_thread.run_sync(conn.send, message)

    async def publish() -> None:
        packer = Packer()
        while True:
            await trio.sleep(interval)
            # Packed at once from the recorder's own arrays: nothing is copied whole.
            snapshot = packer.pack(run.snapshot(live=True), run.recorder.used_buckets())
            await send(("snapshot", snapshot, run.remaining(), run.recorder.take_intervals()))

    async def listen() -> None:
        nonlocal start_at
        control = run.control
        while True:
            try:
                word, args = await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
            except (EOFError, OSError):
                control.interrupt()  # the parent is gone: finish and stop
                go.set()
                return
            if word == "go":
                # The parent's monotonic time, as a time on this trio loop's clock.
                start_at = trio.current_time() + (args[0] - time.monotonic())
                go.set()
            elif word in CONTROL_WORDS:
                getattr(control, word)(*args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        if worker:
            await send(("ready", None, None, []))
            await go.wait()
        nursery.start_soon(publish)
        final = await run.run(start_at)
        nursery.cancel_scope.cancel()
    return final
