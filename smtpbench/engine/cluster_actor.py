"""One engine worker of a cluster run, on a Dask worker: the remote side of
``cluster.py``.

``EngineActor`` is a Dask actor (``client.submit(EngineActor, job, ..., actor=True)``).
It runs the engine as a local ``EngineProcess``, a child process of the Dask worker, so
the pipe, the snapshots and the control words are those of a run on one machine. The
driver calls its methods over the network; each one is short, because Dask runs an
actor's methods one at a time on one thread of the worker:

- ``check()`` before anything starts: can this host reach the target, do its limits fit
  its share, can it start the engine's process at all;
- ``clock()`` for the driver to measure this host's clock against its own;
- ``start()``, then ``go(wall_at)`` once every worker is ready: the start, a wall-clock
  time on this host's clock;
- ``poll(ack)`` several times a second: the engine's messages since the last poll
  (snapshots packed small, as they cross the pipe), kept until the driver says it has
  them, so that a reply lost on the way is sent again;
- the control words, ``results()`` (the session records written here) and ``close()``.

The files the scenario names come inside the job (``job_files.py``): they are written
under a private temporary folder here before the scenario is first read, and removed
with the session records when the actor closes.

A keeper thread of the actor's own watches the driver from the moment the actor is
made, and starts the engine when asked: when no call has come for ``silence``
seconds, the driver is gone (killed, or its host cut off), and the keeper aborts the
engine and removes what the run wrote here, so that no load goes on against a server
with nobody reading the results. The engine process asks the kernel to die with the
thread that started it (``lifeline.py``), so it cannot outlive its keeper either, nor
the Dask worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.engine.snapshot_wire import PackedSnapshot, Packer
from smtpbench.metrics.intervals import IntervalDelta
from smtpbench.metrics.snapshot import Snapshot

DRIVER_SILENCE = 5.0  # seconds without a call from the driver before the engine is aborted
BEFORE_START = 60.0  # seconds without a call, before the start, before the actor closes
WATCH_INTERVAL = 0.25  # seconds between the keeper's looks at the driver's silence
CONNECT_CHECK = 3.0  # seconds the check gives a connection to the target
START_TIMEOUT = 10.0  # seconds ``start`` waits for the keeper to have started the engine
CLOSE_TIMEOUT = 5.0  # seconds the engine gets to exit on its own before it is ended
KEEPER_LINGER = 120.0  # seconds the keeper waits, at most, for a close under way
RESULTS_CHUNK = 4 * 1024 * 1024  # bytes of session records handed back per call
NANNY_FIX = (
    "this Dask worker is a daemonic process (it runs under a nanny), and such a process may "
    "not start the engine's process: start the workers with DASK_DISTRIBUTED__WORKER__DAEMON"
    "=False in their environment (distributed.worker.daemon: False in the Dask "
    "configuration), or with --no-nanny"
)


@dataclass(frozen=True, slots=True)
class Sent:
    """One message of the engine, numbered: kind "snapshot" (packed, with the one-second
    intervals closed since the previous message), "final" (packed on its own, with the
    last intervals) or "lost" (the engine ended without a final snapshot: ``error`` says
    how)."""

    seq: int
    kind: str
    snapshot: PackedSnapshot | None
    fresh: tuple[IntervalDelta, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PollReply:
    """What one ``poll`` returns: the messages the driver has not acknowledged yet."""

    messages: tuple[Sent, ...]
    ready: bool  # the engine waits for its start (or has started)
    remaining: float | None  # seconds left, as the engine last said
    done: bool  # the engine has ended (its last message is among those sent)
    error: str | None  # why the engine ended without results, or why it was stopped
    cpu_seconds: float | None  # the engine process's CPU time so far


class EngineActor:
    """The engine of one share of a cluster run, on the host of its Dask worker."""

    def __init__(
        self, job: EngineJob, record_sessions: bool = False, silence: float = DRIVER_SILENCE
    ) -> None:
        self.job = dataclasses.replace(job, sessions_log=None, transit_log=None)
        self._record_sessions = record_sessions
        self._log: Path | None = None  # made at the start: a run that never starts leaves none
        self._silence = silence
        self._lock = threading.Lock()
        self._heard = time.monotonic()
        self._engine: EngineProcess | None = None
        self._started = threading.Event()  # the keeper has started the engine, or failed to
        self._start_asked = False
        self._start_error: str | None = None
        self._wake = threading.Event()
        self._words: list[tuple[str, tuple[Any, ...]]] | None = []  # before the engine exists
        self._files: Path | None = None  # where the scenario's files are written here
        self._prepared = threading.Lock()
        self._prepare_error: str | None = None
        self._unpacked = False
        self._closed = threading.Event()
        self._shut_down = threading.Event()  # the engine has exited, its records are gone
        self._stopped_by: str | None = None  # why the keeper stopped the engine itself
        # Messages the driver has not acknowledged, and what came since the last poll.
        self._outbox: list[Sent] = []
        self._seq = 0
        self._packer = Packer()
        self._latest: Snapshot | None = None
        self._final: Snapshot | None = None
        self._fresh: list[IntervalDelta] = []
        self._lost: str | None = None
        self._ended = False  # the engine's last message is in the outbox
        self._cpu: float | None = None
        self._keeper = threading.Thread(
            target=self._keep, name="smtpbench-cluster-keeper", daemon=True
        )
        self._keeper.start()

    # -- before the start ----------------------------------------------------

    def check(self) -> dict[str, Any]:
        """This host, and what stands in the way of its share of the run: a list of
        sentences under "problems", empty when it can run."""
        from smtpbench.engine.targets import check_connections
        from smtpbench.limits import check_run, open_files_needed, raise_open_files, this_machine
        from smtpbench.scenario import parse_scenario

        self._heard_now()
        problems: list[str] = []
        daemon = bool(multiprocessing.current_process().daemon)
        if daemon:
            problems.append(NANNY_FIX)
        reached = self._reach_target()
        if reached is not None:
            problems.append(reached)
        machine = this_machine()
        try:
            self._prepare()
            scenario = parse_scenario(self.job.scenario_toml, default_name=self.job.info.scenario)
        except Exception as err:  # the scenario's files cannot be written, or read, here
            problems.append(str(err))
        else:
            load = self.job.share.load(scenario.load) if self.job.share else scenario.load
            raise_open_files(open_files_needed(load, 1, False))
            machine = this_machine()
            problems += check_run(load, 1, False, machine)
            try:
                claimed = scenario.client.addresses if scenario.client.proxy else ()
                check_connections(scenario.target, self.job.address, claimed)
            except Exception as err:  # SessionSetupError: a source address this host lacks
                problems.append(str(err))
        if self._record_sessions and not os.access(tempfile.gettempdir(), os.W_OK):
            problems.append(f"cannot write session records in {tempfile.gettempdir()}")
        return {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "cores": machine.cores,
            "target_reached": reached is None,
            "open_files": machine.open_files,
            "daemon": daemon,
            "problems": problems,
        }

    def _reach_target(self) -> str | None:
        """None if a TCP connection to the target opens within a few seconds; else why."""
        address = self.job.address
        try:
            with socket.socket(address.family, socket.SOCK_STREAM) as probe:
                probe.settimeout(CONNECT_CHECK)
                probe.connect(address.sockaddr)
        except TimeoutError:
            return f"cannot connect to the target {address}: no answer within {CONNECT_CHECK:g}s"
        except OSError as err:
            return f"cannot connect to the target {address}: {err.strerror or err}"
        return None

    def _prepare(self) -> None:
        """Writes the files the job carries under a private folder here, once, and points
        the scenario at them; raises what went wrong (every time it is asked)."""
        with self._prepared:
            if not self._unpacked:
                self._unpacked = True
                if self.job.files:
                    from smtpbench.engine.job_files import unpack

                    try:
                        self._files = Path(tempfile.mkdtemp(prefix="smtpbench-files-"))
                        self.job = unpack(self.job, self._files)
                    except OSError as err:
                        self._prepare_error = (
                            f"cannot write the files the scenario names under "
                            f"{self._files or tempfile.gettempdir()}: {err.strerror or err}"
                        )
            if self._prepare_error is not None:
                raise RuntimeError(self._prepare_error)

    def clock(self) -> float:
        """This host's wall clock."""
        self._heard_now()
        return time.time()

    def start(self) -> None:
        """Has the keeper start the engine; returns once its process has started."""
        self._heard_now()
        if self._closed.is_set():
            raise RuntimeError(self._stopped_by or "this engine worker is closed")
        self._prepare()
        with self._lock:
            self._start_asked = True
        self._wake.set()
        if not self._started.wait(START_TIMEOUT):
            raise RuntimeError(f"the engine process did not start within {START_TIMEOUT:g}s")
        if self._start_error is not None:
            raise RuntimeError(self._start_error)

    def ready(self) -> bool:
        """The engine waits for its start time."""
        self._heard_now()
        return self._engine is not None and self._engine.ready.is_set()

    def go(self, wall_at: float) -> None:
        """Start at ``wall_at``, a time on this host's wall clock (the driver's start time
        plus this clock's offset), given to the engine as a ``time.monotonic()`` reading."""
        self._heard_now()
        if self._engine is not None:
            self._engine.go(time.monotonic() + (wall_at - time.time()))

    # -- during the run ------------------------------------------------------

    def poll(self, ack: int = 0) -> PollReply:
        """The engine's messages the driver has not acknowledged; ``ack``: the number of
        the last message it has."""
        engine = self._engine
        cpu = self._sample_cpu()
        with self._lock:
            self._heard = time.monotonic()
            self._outbox = [sent for sent in self._outbox if sent.seq > ack]
            self._take_messages()
            return PollReply(
                messages=tuple(self._outbox),
                ready=engine is not None and engine.ready.is_set(),
                remaining=engine.remaining() if engine is not None else None,
                done=self._ended,
                error=self._lost or self._stopped_by,
                cpu_seconds=cpu,
            )

    def _take_messages(self) -> None:
        """What the engine said since the last poll, packed into the outbox (the lock is
        held). The final snapshot supersedes a live one not sent yet, but the intervals of
        both go with it."""
        if self._ended:
            return
        if self._final is not None:
            packed = Packer().pack(self._final)  # whole, unpacked by a fresh Unpacker
            self._add("final", packed)
            self._ended = True
        else:
            if self._latest is not None:
                self._add("snapshot", self._packer.pack(self._latest))
                self._latest = None
            if self._lost is not None:
                self._add("lost", None, self._lost)
                self._ended = True

    def _add(self, kind: str, packed: PackedSnapshot | None, error: str | None = None) -> None:
        self._seq += 1
        self._outbox.append(Sent(self._seq, kind, packed, tuple(self._fresh), error))
        self._fresh = []

    def _received(self, kind: str, snapshot: Snapshot | None, fresh: list[IntervalDelta]) -> None:
        """The engine's reader thread: one message, kept for the next poll."""
        if kind == "final":
            self._sample_cpu()  # the engine's time is all but complete now
        with self._lock:
            self._fresh.extend(fresh)
            if kind == "lost":
                engine = self._engine
                self._lost = (engine.error if engine is not None else None) or "it ended"
            elif kind == "final":
                self._final = snapshot
            else:
                self._latest = snapshot

    def pause(self) -> None:
        self._word("pause")

    def resume(self) -> None:
        self._word("resume")

    def scale_rate(self, factor: float) -> None:
        self._word("scale_rate", factor)

    def stop(self) -> None:
        self._word("stop")

    def interrupt(self) -> None:
        self._word("interrupt")

    def abort(self) -> None:
        self._word("abort")

    def _word(self, word: str, *args: Any) -> None:
        """To the engine, in order; kept until it exists (as its pipe would keep them)."""
        with self._lock:
            self._heard = time.monotonic()
            if self._words is not None:
                self._words.append((word, args))
            elif self._engine is not None:
                getattr(self._engine, word)(*args)

    def cpu_seconds(self) -> float | None:
        """The engine process's CPU time (user and system), as last seen while it ran;
        None where it cannot be read."""
        return self._sample_cpu()

    def _sample_cpu(self) -> float | None:
        engine = self._engine
        pid = engine.pid if engine is not None else None
        if pid is not None and not (engine is not None and engine.done):
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                with self._lock:
                    self._cpu = max(self._cpu or 0.0, seconds)
        return self._cpu

    # -- after the run -------------------------------------------------------

    def results(self, offset: int = 0, size: int = RESULTS_CHUNK) -> bytes:
        """Up to ``size`` bytes of the session records written here, from ``offset``;
        empty past the end, or when the run asked for none."""
        self._heard_now()
        if self._log is None or not self._log.is_file():
            return b""
        with self._log.open("rb") as records:
            records.seek(offset)
            return records.read(size)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Waits for the engine to exit (ends it if it does not) and deletes the session
        records written here."""
        self._heard_now()
        self._shut(timeout)

    def _shut(self, timeout: float) -> None:
        with self._lock:
            engine = self._engine
            already = self._closed.is_set()
            self._closed.set()
        if already:
            self._shut_down.wait(timeout)
            return
        try:
            if engine is not None:
                engine.wait(timeout)
                engine.close(1.0)  # it has exited, or it is ended now
            if self._log is not None:
                with contextlib.suppress(OSError):
                    self._log.unlink()
            with self._prepared:
                if self._files is not None:
                    shutil.rmtree(self._files, ignore_errors=True)
        finally:
            self._shut_down.set()
        keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout)

    # -- the keeper thread ---------------------------------------------------

    def _heard_now(self) -> None:
        with self._lock:
            self._heard = time.monotonic()

    def _keep(self) -> None:
        """The keeper thread: starts the engine when asked, and watches the driver until
        the actor is closed. It must outlive the engine, which dies with it."""
        while not self._closed.is_set():
            self._wake.clear()
            with self._lock:
                start = self._start_asked and not self._started.is_set()
            if start:
                self._start_engine()
            with self._lock:
                quiet = time.monotonic() - self._heard
                # Before the start there is no engine to stop, only files to remove, and the
                # driver may be busy with the other hosts: it gets longer.
                limit = self._silence if self._start_asked else max(self._silence, BEFORE_START)
            if quiet > limit:
                self._stopped_by = f"stopped: no word from the driver for {quiet:.1f}s (it is gone)"
                engine = self._engine
                if engine is not None:
                    engine.abort()
                self._shut(CLOSE_TIMEOUT)
                return
            self._wake.wait(WATCH_INTERVAL)
        # Closed by the driver: the engine is exiting, or close() ends it.
        self._shut_down.wait(KEEPER_LINGER)

    def _start_engine(self) -> None:
        try:
            if self._record_sessions:
                fd, name = tempfile.mkstemp(prefix="smtpbench-sessions-", suffix=".ndjson")
                os.close(fd)
                self._log = Path(name)
                self.job = dataclasses.replace(self.job, sessions_log=name)
            engine = self._engine = EngineProcess(self.job, listener=self._received)
            engine.start()
        except Exception as err:
            self._engine = None
            self._start_error = f"the engine process did not start: {err}"
        else:
            with self._lock:  # the words said before, in order, then those that come
                words, self._words = self._words or [], None
                for word, args in words:
                    getattr(engine, word)(*args)
        finally:
            self._started.set()


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` so far; None where it cannot be read."""
    try:
        import psutil  # installed with distributed
    except ImportError:
        return _proc_cpu_seconds(pid)
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return float(times.user + times.system)


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        fields = stat.rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
