"""One run spread over the workers of a Dask cluster, read and steered as one.

``ClusterGroup`` has the methods of ``EngineGroup`` (``group.py``), so the dashboard
and the headless loop take it as they take a group of local worker processes. Each
chosen Dask worker gets an ``EngineActor`` (``cluster_actor.py``) that runs one share
of the load (``shares.py``) in an engine process on that worker's host; session
numbers stay run-wide, so nothing collides between hosts.

Before anything starts, every host is checked (can it reach the target, do its
limits fit its share, can it start the engine's process); a host that cannot run
its share stops the run before its start, with a line naming it. Then each host's
clock is measured against this one's: the start is one wall-clock instant, which
each host is told as its own clock reads it, so that the hosts' seconds line up as
closely as the clocks are known (offsets above ``max_clock_offset`` are in
``warnings``).

A poller thread asks every host for its messages each publishing interval and feeds
them to a ``WorkerMerge``, as ``EngineGroup`` does with its workers' pipes; views
read the merged snapshot. A host that stops answering (its Dask worker died, or its
network went) is lost: the merge keeps what it last sent, ``error`` names it, and
the others stop too (``on_host_loss="stop"``, as a group does) or go on
(``"continue"``). Nothing waits on a host for longer than a few seconds. If this
process dies instead, every host aborts its engine after a few seconds without a
word from it.

Session records (``--record-sessions``): each host writes its own file there; at
the end they are fetched and joined into the run's one, host after host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtpbench.engine.cluster_actor import DRIVER_SILENCE, EngineActor, PollReply
from smtpbench.engine.process import EngineJob
from smtpbench.engine.shares import Share, worker_count
from smtpbench.engine.snapshot_wire import Unpacker
from smtpbench.metrics.hosts import HostRow
from smtpbench.metrics.live_merge import WorkerMerge
from smtpbench.metrics.snapshot import Snapshot

ON_HOST_LOSS = ("stop", "continue")
START_MARGIN = 0.2  # seconds from sending the start time to the start, at least
CLOCK_ROUNDS = 5  # clock readings per host; the one with the shortest round trip counts
CALL_TIMEOUT = 15.0  # seconds for a host to answer a call before the start
READY_TIMEOUT = 60.0  # seconds for every engine to be ready (a busy host imports slowly)
POLL_TIMEOUT = 2.0  # seconds a round of polls waits for its answers
POLL_FAILURES = 3  # polls in a row unanswered: the host is lost
CONTROL_TIMEOUT = 5.0  # seconds a control word waits for the hosts' answers
RESULTS_TIMEOUT = 30.0  # seconds for one chunk of session records
CLIENT_CLOSE = 5.0  # seconds the connection to the scheduler gets to close


class ClusterError(Exception):
    """The run cannot start on the cluster: what stands in the way, one line each."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where the cluster is and how much of it a run takes.

    ``workers``: engine workers to use at most (default: every Dask worker);
    ``per_host``: at most this many on each host (a host is a Dask worker's address);
    ``on_host_loss``: "stop" the others when a host is lost, or let them "continue";
    ``max_clock_offset``: seconds a host's clock may be off this one's before it is
    warned of; ``connect_timeout``: seconds to reach the scheduler."""

    address: str
    workers: int | None = None
    per_host: int | None = None
    on_host_loss: str = "stop"
    max_clock_offset: float = 0.05
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.on_host_loss not in ON_HOST_LOSS:
            raise ValueError(f"on_host_loss is 'stop' or 'continue', got {self.on_host_loss!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"a run needs at least one worker, got {self.workers}")
        if self.per_host is not None and self.per_host < 1:
            raise ValueError(f"at least one worker per host, got {self.per_host}")
        if not self.connect_timeout > 0:
            raise ValueError(f"the connect timeout must be above 0, got {self.connect_timeout}")
        if not self.max_clock_offset >= 0:
            raise ValueError(f"the clock offset must be 0 or more, got {self.max_clock_offset}")


@dataclass(eq=False)
class _Host:
    """The driver's side of one engine worker."""

    index: int
    worker: str  # the Dask worker's address
    future: Any  # the Dask future that holds the actor
    actor: Any = None
    hostname: str = ""
    offset: float = 0.0
    round_trip: float = 0.0
    unpacker: Unpacker = field(default_factory=Unpacker)
    ack: int = 0  # the number of the last message taken
    failures: int = 0  # polls in a row that did not answer
    ready: bool = False
    latest: Snapshot | None = None
    final: Snapshot | None = None
    remaining: float | None = None
    cpu_seconds: float | None = None
    ended: bool = False  # its final snapshot came, or it was lost
    lost: bool = False
    lost_at: float | None = None
    lost_reason: str | None = None
    answers: bool = True  # its actor can still be called (its Dask worker is there)

    @property
    def label(self) -> str:
        return f"{self.worker} ({self.hostname})" if self.hostname else self.worker


def _say(err: BaseException) -> str:
    """The error in one line (Dask's own messages run over several)."""
    text = " ".join(str(err).split())
    if isinstance(err, TimeoutError):
        return f"no answer in time{f' ({text})' if text else ''}"
    return text or type(err).__name__


def _gather(calls: dict[int, tuple[Any, str, tuple[Any, ...]]], timeout: float) -> dict[int, Any]:
    """Calls each ``(actor, method, args)``, then waits for all the answers, ``timeout``
    seconds in all; an exception in place of each that failed. Naming the method of an
    actor whose worker is gone raises at once ("Worker holding Actor was lost"), so that
    happens here too."""
    results: dict[int, Any] = {}
    futures: dict[int, Any] = {}
    for key, (actor, method, args) in calls.items():
        try:
            futures[key] = getattr(actor, method)(*args)
        except Exception as err:
            results[key] = err
    deadline = time.monotonic() + timeout
    for key, future in futures.items():
        try:
            results[key] = future.result(timeout=max(0.001, deadline - time.monotonic()))
        except Exception as err:
            results[key] = err
    return results


def _call(actor: Any, method: str, *args: Any, timeout: float) -> Any:
    """One call, and its answer within ``timeout`` seconds."""
    answer = _gather({0: (actor, method, args)}, timeout)[0]
    if isinstance(answer, BaseException):
        raise answer
    return answer


class ClusterGroup:
    """One run over the workers of the Dask cluster at ``settings.address``.

    Connecting, placing the engine workers, checking every host and measuring the
    clocks happen here, and raise ``ClusterError`` when the run cannot start;
    ``start()`` then starts them all together."""

    def __init__(self, job: EngineJob, settings: ClusterSettings) -> None:
        from smtpbench.scenario import parse_scenario

        self.job = job
        self.settings = settings
        self.warnings: list[str] = []
        self.lost_workers: list[int] = []  # those that ended without their final snapshot
        self._lock = threading.Lock()
        self._final: Snapshot | None = None
        self._error: str | None = None
        self._done = threading.Event()
        self._closing = threading.Event()
        self._go_ahead = threading.Event()  # start() was called
        self._nudge = threading.Event()  # start() or close(): the runner looks at once
        self._t0: float | None = None  # the start, on this process's monotonic clock
        self._words: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._hosts: list[_Host] = []
        self._load = parse_scenario(job.scenario_toml, default_name=job.info.scenario).load
        self._client = self._connect()
        try:
            chosen = self._choose()
            self.workers = len(chosen)
            self._merge = WorkerMerge(job.info, self.workers)
            self._place(chosen)
            self._check()
            self._measure_clocks()
        except BaseException:
            self._release()
            raise
        # From now on the hosts hear from this process several times a second, until close():
        # a host that hears nothing for a while takes it that this process is gone.
        self._runner = threading.Thread(
            target=self._run, name="smtpbench-cluster-poller", daemon=True
        )
        self._steerer = threading.Thread(
            target=self._steer_loop, name="smtpbench-cluster-steering", daemon=True
        )
        self._steerer.start()
        self._runner.start()

    # -- before the start ----------------------------------------------------

    def _connect(self) -> Any:
        try:
            from distributed import Client
        except ImportError:
            raise ClusterError(
                "a cluster run needs Dask's distributed package: pip install 'smtp-loadbench[dask]'"
            ) from None
        address, timeout = self.settings.address, self.settings.connect_timeout
        try:
            # Calls go straight to the workers; the actors find this client as the default.
            return Client(address, timeout=timeout, direct_to_workers=True, set_as_default=True)
        except (OSError, TimeoutError):
            raise ClusterError(
                f"cannot connect to the scheduler at {address} within {timeout:g}s"
            ) from None
        except Exception as err:
            raise ClusterError(f"cannot connect to the scheduler at {address}: {err}") from None

    def _choose(self) -> list[str]:
        """The Dask workers to run on: spread over the hosts, at most ``per_host`` on each,
        at most ``workers`` in all, and no more than the load can use."""
        found = self._client.scheduler_info(n_workers=-1).get("workers", {})
        if not found:
            raise ClusterError(f"the cluster at {self.settings.address} has no workers")
        by_host: dict[str, list[str]] = {}
        for address in sorted(found):
            host = found[address].get("host") or _host_of(address)
            by_host.setdefault(host, []).append(address)
        per_host = self.settings.per_host
        if per_host is not None:
            by_host = {host: group[:per_host] for host, group in by_host.items()}
        # Host after host, so that a few workers still spread over the hosts.
        spread = [
            address
            for round_ in itertools.zip_longest(*by_host.values())
            for address in round_
            if address is not None
        ]
        wanted = self.settings.workers
        if wanted is not None and wanted > len(spread):
            self.warnings.append(
                f"{wanted} workers asked for; the cluster offers {len(spread)}, all taken"
            )
        requested = len(spread) if wanted is None else min(wanted, len(spread))
        return spread[: worker_count(self._load, requested)]

    def _place(self, chosen: list[str]) -> None:
        """An engine actor on each chosen Dask worker, with its share of the run."""
        count = len(chosen)
        record = self.job.sessions_log is not None
        run = uuid.uuid4().hex[:12]
        for i, address in enumerate(chosen):
            job = dataclasses.replace(
                self.job, share=Share(i, count), sessions_log=None, transit_log=None
            )
            future = self._client.submit(
                EngineActor,
                job,
                record,
                DRIVER_SILENCE,
                actor=True,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                key=f"smtpbench-engine-{run}-{i}",
            )
            self._hosts.append(_Host(i, address, future, remaining=self.job.info.planned_duration))
        deadline = time.monotonic() + CALL_TIMEOUT
        problems = []
        for host in self._hosts:
            try:
                host.actor = host.future.result(timeout=max(0.001, deadline - time.monotonic()))
            except Exception as err:
                problems.append(f"{host.label}: its engine worker could not be made: {_say(err)}")
        if problems:
            raise ClusterError("\n".join(problems))

    def _check(self) -> None:
        answers = _gather({h.index: (h.actor, "check", ()) for h in self._hosts}, CALL_TIMEOUT)
        problems = []
        for host in self._hosts:
            answer = answers[host.index]
            if isinstance(answer, BaseException):
                problems.append(f"{host.label}: its check failed: {_say(answer)}")
                continue
            host.hostname = str(answer.get("hostname", ""))
            problems += [f"{host.label}: {problem}" for problem in answer.get("problems", [])]
        if problems:
            raise ClusterError("\n".join(problems))

    def _measure_clocks(self) -> None:
        """Each host's clock offset: several readings, the one with the shortest round trip
        (``remote - midpoint``), one host after another so that no reading waits on another."""
        problems = []
        for host in self._hosts:
            best: tuple[float, float] | None = None
            try:
                for _ in range(CLOCK_ROUNDS):
                    wall, sent = time.time(), time.monotonic()
                    remote = float(_call(host.actor, "clock", timeout=CALL_TIMEOUT))
                    trip = time.monotonic() - sent
                    if best is None or trip < best[0]:
                        best = (trip, remote - (wall + trip / 2))
            except Exception as err:
                problems.append(f"{host.label}: its clock could not be read: {_say(err)}")
                continue
            assert best is not None
            host.round_trip, host.offset = best
            if abs(host.offset) > self.settings.max_clock_offset:
                self.warnings.append(
                    f"{host.label}: its clock is {host.offset * 1000:+,.0f} ms off this one's "
                    f"(measured to within {host.round_trip * 500:.1f} ms); its start and its "
                    "seconds are corrected by that much"
                )
        if problems:
            raise ClusterError("\n".join(problems))

    # -- the run ---------------------------------------------------------------

    def start(self) -> None:
        """Starts the engines; returns at once (they start together when all are ready)."""
        self._go_ahead.set()
        self._nudge.set()

    def _run(self) -> None:
        interval = self.job.publish_interval
        try:
            while not self._go_ahead.is_set() and not self._closing.is_set():
                self._poll([h for h in self._hosts if not h.ended])  # word that we are here
                self._nudge.wait(interval)
            if not self._go_ahead.is_set():
                return  # closed before the start
            self._start_engines()
            while not self._merge.done and not self._closing.is_set():
                began = time.monotonic()
                self._poll([h for h in self._hosts if not h.ended])
                self._closing.wait(max(0.0, interval - (time.monotonic() - began)))
            if not self._merge.done:
                with self._lock:
                    for host in self._hosts:
                        self._lose(host, "it had not finished when the run was closed")
            self._join_logs()
        except Exception as err:  # a fault here: the run ends, named, with what it had
            with self._lock:
                for host in self._hosts:
                    self._lose(host, f"the driver's poller failed: {_say(err)}")
            self._steer("abort")
        finally:
            with self._lock:
                self._final = self._merge.final()
            self._done.set()

    def _start_engines(self) -> None:
        started = _gather({h.index: (h.actor, "start", ()) for h in self._hosts}, CALL_TIMEOUT)
        with self._lock:
            for host in self._hosts:
                if isinstance(started[host.index], BaseException):
                    why = _say(started[host.index])
                    self._lose(host, f"its engine did not start: {why}", started=False)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._closing.is_set():
            waiting = [h for h in self._hosts if not h.ended and not h.ready]
            if not waiting:
                break
            if time.monotonic() > deadline:
                with self._lock:
                    for host in waiting:
                        why = f"its engine was not ready within {READY_TIMEOUT:g}s"
                        self._lose(host, why, started=False)
                _gather(
                    {h.index: (h.actor, "abort", ()) for h in waiting if h.answers}, CONTROL_TIMEOUT
                )
                break
            self._poll(waiting)
            self._closing.wait(0.05)
        going = [h for h in self._hosts if not h.ended]
        margin = max([START_MARGIN] + [4 * h.round_trip for h in going])
        at = time.time() + margin
        self._t0 = time.monotonic() + margin
        told = _gather({h.index: (h.actor, "go", (at + h.offset,)) for h in going}, CALL_TIMEOUT)
        with self._lock:
            for host in going:
                if isinstance(told[host.index], BaseException):
                    self._lose(host, f"it was not told the start: {_say(told[host.index])}")

    def _poll(self, hosts: list[_Host]) -> None:
        """One round: each host's messages since its last poll, into the merge; hosts that
        do not answer several times in a row, or whose Dask worker left, are lost."""
        replies = _gather({h.index: (h.actor, "poll", (h.ack,)) for h in hosts}, POLL_TIMEOUT)
        failed: list[tuple[_Host, BaseException]] = []
        for host in hosts:
            reply = replies[host.index]
            if isinstance(reply, BaseException):
                host.failures += 1
                failed.append((host, reply))
            else:
                host.failures = 0
                self._take(host, reply)
        if not failed:
            return
        present = self._scheduler_workers()
        with self._lock:
            for host, err in failed:
                gone = present is not None and host.worker not in present
                if gone or host.failures >= POLL_FAILURES:
                    host.answers = False
                    if gone:
                        why = "its Dask worker left the cluster"
                    else:
                        why = f"it did not answer {host.failures} polls in a row ({_say(err)})"
                        if present is None:
                            why += f"; the scheduler at {self.settings.address} is gone too"
                    self._lose(host, why)

    def _scheduler_workers(self) -> set[str] | None:
        """The Dask workers the scheduler knows now; None if it does not answer."""
        try:
            identity = self._client.sync(
                self._client.scheduler.identity, n_workers=-1, callback_timeout=POLL_TIMEOUT
            )
            return set(identity.get("workers", {}))
        except Exception:
            return None

    def _take(self, host: _Host, reply: PollReply) -> None:
        with self._lock:
            for sent in reply.messages:
                if sent.seq <= host.ack:
                    continue  # taken from an earlier reply
                host.ack = sent.seq
                if host.ended:
                    continue
                if sent.kind == "snapshot" and sent.snapshot is not None:
                    snapshot = host.unpacker.unpack(sent.snapshot)
                    host.latest = snapshot
                    self._merge.add(host.index, snapshot, list(sent.fresh), final=False)
                elif sent.kind == "final" and sent.snapshot is not None:
                    snapshot = Unpacker().unpack(sent.snapshot)  # packed whole
                    host.latest = host.final = snapshot
                    host.ended = True
                    self._merge.add(host.index, snapshot, list(sent.fresh), final=True)
                elif sent.kind == "lost":
                    self._lose(host, f"its {sent.error or 'engine ended'}", started=False)
            host.ready = reply.ready
            if reply.remaining is not None or reply.done:  # before its engine: as planned
                host.remaining = reply.remaining
            if reply.cpu_seconds is not None:
                host.cpu_seconds = reply.cpu_seconds

    def _lose(self, host: _Host, reason: str, *, started: bool = True) -> None:
        """The host ends without its final snapshot (the lock is held). ``started``: say
        what it had started by its last snapshot (an engine's own account says it)."""
        if host.ended:
            return
        host.ended = host.lost = True
        host.lost_at = time.monotonic() - self._t0 if self._t0 is not None else None
        host.lost_reason = reason
        self.lost_workers.append(host.index)
        self._merge.lost(host.index)
        if host.lost_at is None:
            when = "before the start"
        elif host.lost_at < 0:
            when = "just before the start"
        else:
            when = f"{host.lost_at:.1f}s into the run"
        worker = f"worker {host.index + 1} of {self.workers}"
        said = f"host {host.label}, {worker}, lost {when}: {reason}"
        if started:
            count = host.latest.counters.started if host.latest is not None else 0
            said += f"; it had started {count:,} sessions by its last snapshot"
        self._error = said if self._error is None else f"{self._error}; {said}"
        if self.settings.on_host_loss == "stop":
            # The run cannot be whole any more: the others stop too, keeping what ran.
            self._steer("interrupt")

    def _join_logs(self) -> None:
        """The hosts' session records, fetched and joined into the run's file."""
        if self.job.sessions_log is None:
            return
        with Path(self.job.sessions_log).open("wb") as joined:
            for host in self._hosts:
                if not host.answers:
                    continue
                offset = 0
                while True:
                    try:
                        chunk = _call(host.actor, "results", offset, timeout=RESULTS_TIMEOUT)
                    except Exception as err:
                        self.warnings.append(
                            f"{host.label}: its session records could not be fetched past "
                            f"{offset:,} bytes: {_say(err)}"
                        )
                        break
                    if not chunk:
                        break
                    joined.write(chunk)
                    offset += len(chunk)

    # -- what the views read ------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        """The hosts' latest snapshots merged (the final one once the run is over)."""
        with self._lock:
            return self._final or self._merge.snapshot()

    def remaining(self) -> float | None:
        if self._final is not None:
            return 0.0
        left = [h.remaining for h in self._hosts if not h.ended and h.remaining is not None]
        return max(left) if left else None

    @property
    def final(self) -> Snapshot | None:
        return self._final

    @property
    def error(self) -> str | None:
        """Which hosts ended without a final snapshot, when, and why."""
        return self._error

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Snapshot | None:
        self._done.wait(timeout)
        return self._final

    def parts(self) -> list[Snapshot | None]:
        """Each host's own final snapshot (what the merged one adds up)."""
        return [host.final for host in self._hosts]

    def hosts(self) -> list[HostRow]:
        """A row for each engine worker: where it ran, what it did, how it ended."""
        with self._lock:
            rows = []
            for host in self._hosts:
                snapshot = host.final or host.latest
                started = snapshot.counters.started if snapshot is not None else 0
                elapsed = snapshot.elapsed if snapshot is not None else 0.0
                rows.append(
                    HostRow(
                        worker=host.worker,
                        hostname=host.hostname,
                        index=host.index,
                        started=started,
                        rate=started / elapsed if elapsed > 0 else None,
                        cpu_seconds=host.cpu_seconds,
                        clock_offset=host.offset,
                        round_trip=host.round_trip,
                        lost=host.lost,
                        lost_at=host.lost_at,
                        lost_reason=host.lost_reason,
                    )
                )
            return rows

    # -- steering -----------------------------------------------------------

    def pause(self) -> None:
        self._steer("pause")

    def resume(self) -> None:
        self._steer("resume")

    def scale_rate(self, factor: float) -> None:
        self._steer("scale_rate", factor)

    def stop(self) -> None:
        self._steer("stop")

    def interrupt(self) -> None:
        self._steer("interrupt")

    def abort(self) -> None:
        self._steer("abort")

    def _steer(self, word: str, *args: Any) -> None:
        """Queued for the steering thread, which sends each word to every host in turn and
        waits for their answers, so words arrive in order and a caller never waits."""
        self._words.put((word, args))

    def _steer_loop(self) -> None:
        while (item := self._words.get()) is not None:
            word, args = item
            hosts = [h for h in self._hosts if not h.ended and h.actor is not None]
            _gather({h.index: (h.actor, word, args) for h in hosts}, CONTROL_TIMEOUT)

    def close(self, timeout: float = 10.0) -> None:
        """Waits for the hosts to finish and their engines to exit (ends those that do not),
        then lets go of the actors and the connection to the cluster."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        if self._go_ahead.is_set():
            self._runner.join(left())
            if self._runner.is_alive():
                self._steer("abort")  # a moment for their final snapshots
                self._runner.join(CONTROL_TIMEOUT)
        self._closing.set()  # the poller gives up on those still running
        self._nudge.set()
        self._runner.join(POLL_TIMEOUT + 1)
        self._words.put(None)
        self._steerer.join(CONTROL_TIMEOUT + 1)
        answering = [h for h in self._hosts if h.answers and h.actor is not None]
        close = left()
        _gather({h.index: (h.actor, "close", (close,)) for h in answering}, close + 2)
        self._release()

    def _release(self) -> None:
        """Lets go of the actors and closes the connection to the scheduler."""
        futures = [host.future for host in self._hosts]
        for host in self._hosts:
            host.actor = None
        # Where the scheduler is gone, nothing holds them any more anyway.
        with contextlib.suppress(Exception):
            if futures:
                self._client.cancel(futures)
        with contextlib.suppress(Exception):
            self._client.close(timeout=CLIENT_CLOSE)


def _host_of(address: str) -> str:
    """The host part of a Dask address such as tcp://10.0.0.5:8786."""
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0].strip("[]")
