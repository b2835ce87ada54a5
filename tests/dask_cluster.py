"""A Dask cluster of real processes on loopback, for the cluster tests.

A scheduler on 127.0.0.1, and workers each on an address of their own in 127.0.0.0/8
(127.0.0.2, 127.0.0.3, ...): each worker is a "host" of the run. Every listener,
dashboards included, is on a loopback address. Our sink runs in a thread of the test
process and counts what it accepts, live."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

from smtpbench.engine.process import EngineJob
from smtpbench.engine.transport import Address
from smtpbench.metrics.snapshot import RunInfo
from smtpbench.scenario import parse_scenario, scenario_to_toml
from smtpbench.scenario.overrides import summarize_load
from smtpbench.servers.sink import Sink, SinkConfig, serve_sink

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 60.0  # seconds: a bound on every wait, never a measure
SCHEDULER_HOST = "127.0.0.1"


def _environment(tmp: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)  # what the worker leaves behind is seen there
    # The workers import smtpbench from this checkout, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["DASK_LOGGING__DISTRIBUTED"] = "warning"
    return env


@dataclass(eq=False)
class DaskWorker:
    """One ``dask worker`` process: a host of the run."""

    host: str
    name: str
    process: subprocess.Popen[bytes]
    tmp: Path  # its temporary folder
    address: str = ""  # tcp://HOST:PORT, once registered with the scheduler

    def leftovers(self) -> list[str]:
        """What runs left in its temporary folder (records, the scenario's files)."""
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("smtpbench-"))

    def kill(self) -> None:
        """SIGKILL, as a host that dies; its engine must die with it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(LIMIT)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(eq=False)
class DaskCluster:
    folder: Path
    scheduler: subprocess.Popen[bytes]
    address: str
    workers: list[DaskWorker] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: iter(range(2, 255)))

    @classmethod
    def start(cls, folder: Path, hosts: int) -> DaskCluster:
        """A scheduler and ``hosts`` workers, all registered."""
        scheduler_file = folder / "scheduler.json"
        command = [
            sys.executable, "-m", "distributed.cli.dask_scheduler",
            "--host", SCHEDULER_HOST, "--port", "0", "--no-dashboard",
            "--dashboard-address", f"{SCHEDULER_HOST}:0",
            "--scheduler-file", str(scheduler_file),
        ]  # fmt: skip
        scheduler = _spawn(command, folder / "scheduler.log")
        deadline = time.monotonic() + LIMIT
        address = ""
        while not address:
            if scheduler.poll() is not None or time.monotonic() > deadline:
                scheduler.kill()
                log = (folder / "scheduler.log").read_text(errors="replace")
                raise RuntimeError(f"the Dask scheduler did not start:\n{log}")
            with contextlib.suppress(OSError, ValueError):
                address = json.loads(scheduler_file.read_text())["address"]
            if not address:
                time.sleep(0.05)
        cluster = cls(folder, scheduler, address)
        try:
            for _ in range(hosts):
                cluster.add_worker(wait=False)
            cluster.wait_for_workers()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def add_worker(self, wait: bool = True) -> DaskWorker:
        """One more worker, on the next loopback address."""
        host = f"127.0.0.{next(self._numbers)}"
        name = f"host-{host}"
        command = [
            sys.executable, "-m", "distributed.cli.dask_worker", self.address,
            "--host", host, "--nthreads", "1", "--no-nanny", "--name", name,
            "--no-dashboard", "--dashboard-address", f"{host}:0",
            "--death-timeout", "30", "--local-directory", str(self.folder / name),
        ]  # fmt: skip
        tmp = self.folder / f"{name}.tmp"
        tmp.mkdir()
        worker = DaskWorker(host, name, _spawn(command, self.folder / f"{name}.log", tmp), tmp)
        self.workers.append(worker)
        if wait:
            self.wait_for_workers()
        return worker

    def live_workers(self) -> list[DaskWorker]:
        return [worker for worker in self.workers if worker.alive]

    def wait_for_workers(self) -> None:
        """Until the scheduler knows every live worker; their addresses noted."""
        from distributed import Client

        live = self.live_workers()
        if not live:
            return
        with Client(self.address, timeout=LIMIT, set_as_default=False) as client:
            client.wait_for_workers(len(live), timeout=LIMIT)
            names = {
                info["name"]: address
                for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
            }
        for worker in live:
            worker.address = names[worker.name]

    def engine_processes(self) -> list[psutil.Process]:
        """The engine processes the workers started (their other children, such as
        multiprocessing's resource tracker, left out)."""
        found = []
        for worker in self.workers:
            for child in _descendants(worker.process.pid):
                with contextlib.suppress(psutil.Error):
                    line = " ".join(child.cmdline())
                    if "spawn_main" in line and "resource_tracker" not in line:
                        found.append(child)
        return found

    def stop(self) -> list[str]:
        """Stops every process; returns those that were still there after their parent
        was gone (none, when every engine died with its worker)."""
        processes = [worker.process for worker in self.workers] + [self.scheduler]
        children = [c for p in processes for c in _descendants(p.pid)]
        # The workers first: one that closes while the scheduler goes too may hang.
        for group in (processes[:-1], processes[-1:]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(LIMIT)
        described = []
        for child in wait_gone(children, 10):
            with contextlib.suppress(psutil.Error):
                described.append(f"{child.pid}: {' '.join(child.cmdline())}")
                child.kill()
        return described


def _spawn(command: list[str], log: Path, tmp: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(tmp),
            cwd=ROOT,
        )


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits until none of ``processes`` runs, ``timeout`` seconds at most; those still
    running then."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def _running(process: psutil.Process) -> bool:
    """Still there (a zombie waiting for its parent to reap it is not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@contextlib.contextmanager
def counting_sink(**options: Any) -> Iterator[Sink]:
    """Our sink on 127.0.0.1, in a trio loop in a thread; ``sink.stats`` counts live."""
    started: queue.Queue[Sink | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            sink = await nursery.start(serve_sink, SinkConfig(**options))
            started.put(sink)
            while not stop.is_set():
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    def main() -> None:
        try:
            trio.run(serve)
        except BaseException as err:  # reported to the test through the queue
            started.put(err)

    thread = threading.Thread(target=main, name="counting-sink", daemon=True)
    thread.start()
    got = started.get(timeout=LIMIT)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
    finally:
        stop.set()
        thread.join(LIMIT)


def cluster_job(
    host: str,
    port: int,
    *,
    rate: float,
    sessions: int | None = None,
    duration: float | None = None,
    sessions_log: str | None = None,
    seed: int = 3,
    session: tuple[str, ...] = (),
    tables: str = "",
    folder: Path | None = None,
) -> EngineJob:
    """A run's job as the command builds it: the scenario from TOML text, resolved
    (``session``: more lines of its [session] table, ``tables``: more tables, file names
    relative to ``folder``)."""
    limits = [f"sessions = {sessions}"] if sessions is not None else []
    limits += [f'duration = "{duration:g}s"'] if duration is not None else []
    text = "\n".join(
        [
            'name = "cluster"',
            "[target]",
            f'host = "{host}"',
            f"port = {port}",
            "[load]",
            f'rate = "{rate:g}/s"',
            *limits,
            'grace = "5s"',
            "[session]",
            'size = "1KiB"',
            *session,
            tables,
        ]
    )
    file = str(folder / "scenario.toml") if folder is not None else None
    scenario = dataclasses.replace(parse_scenario(text, file=file), seed=seed)
    info = RunInfo(
        scenario=scenario.name,
        target=f"{host}:{port}",
        load=summarize_load(scenario),
        mode=scenario.load.mode,
        planned_duration=scenario.load.duration,
        planned_sessions=scenario.load.sessions,
        seed=seed,
        started_at="2026-01-01T00:00:00+00:00",
        version="test",
        run_id=uuid.uuid4().hex,
    )
    address = Address(host, port, socket.AF_INET, (host, port))
    return EngineJob(scenario_to_toml(scenario), address, seed, info, sessions_log=sessions_log)


def drive(scheduler: str, host: str, port: str) -> None:
    """A driver for the test of a driver that dies: a long run over the cluster; says
    "started" on stdout once sessions have started, then waits to be killed."""
    from smtpbench.engine.cluster import ClusterGroup, ClusterSettings

    job = cluster_job(host, int(port), rate=100, duration=60)
    group = ClusterGroup(job, ClusterSettings(scheduler, connect_timeout=LIMIT))
    group.start()
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        snapshot = group.snapshot()
        if snapshot is not None and snapshot.counters.started >= 30:
            print("started", flush=True)
            break
        time.sleep(0.05)
    group.wait(LIMIT)
