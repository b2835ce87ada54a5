"""One run over a Dask cluster of real processes on loopback: a scheduler, and workers
each on an address of its own (each a "host"). The merged run starts exactly the
schedule's sessions, each host its share; what the server accepted is what the
results say; a host that dies is named and the rest carry on (or stop); a driver
that dies leaves no engine running; a host that cannot reach the target stops the
run before its start."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

try:
    import distributed  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the test extra: a missing Dask fails there instead of hiding
    pytest.skip("Dask's distributed is not installed (the dask extra)", allow_module_level=True)

from smtpbench.engine import job_files
from smtpbench.engine.cluster import ClusterError, ClusterGroup, ClusterSettings
from smtpbench.engine.shares import Share
from smtpbench.metrics.sessions import read_sessions
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.run.engines import describe, where
from tests.dask_cluster import LIMIT, ROOT, DaskCluster, cluster_job, counting_sink, wait_gone
from tests.servers import LOOPBACK, free_port, postfix_smtp_sink

pytestmark = pytest.mark.end_to_end

HOSTS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    cluster = DaskCluster.start(tmp_path_factory.mktemp("dask"), HOSTS)
    try:
        yield cluster
    finally:
        left = cluster.stop()
    assert left == [], f"processes outlived the cluster: {left}"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = LIMIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(0.02)


def started(group: ClusterGroup) -> int:
    snapshot = group.snapshot()
    return snapshot.counters.started if snapshot is not None else 0


def run_to_end(group: ClusterGroup) -> Snapshot:
    group.start()
    try:
        final = group.wait(LIMIT)
    finally:
        group.close()
    assert final is not None, group.error
    return final


def assert_sum_of_parts(final: Snapshot, parts: list[Snapshot]) -> None:
    np.testing.assert_array_equal(final.latency.counts, sum(p.latency.counts for p in parts))
    np.testing.assert_array_equal(final.replies, sum(p.replies for p in parts))
    np.testing.assert_array_equal(final.errors, sum(p.errors for p in parts))
    for name in ("started", "completed", "messages_accepted", "bytes_sent"):
        total = sum(getattr(p.counters, name) for p in parts)
        assert getattr(final.counters, name) == total, name


def test_a_run_over_the_cluster_is_the_sum_of_its_hosts(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    sessions = 300
    log = tmp_path / "sessions.ndjson"
    with counting_sink() as sink:
        host, port = sink.address
        job = cluster_job(host, port, rate=200, sessions=sessions, sessions_log=str(log))
        group = ClusterGroup(job, ClusterSettings(cluster.address))
        assert group.workers == HOSTS
        assert group.warnings == []
        final = run_to_end(group)
        accepted_by_server = sink.stats.messages_accepted

    # Exactly the schedule's sessions, each host its interleaved share.
    c = final.counters
    assert final.state is RunState.DONE and group.error is None and group.lost_workers == []
    assert c.started == sessions == final.info.planned_sessions
    parts = group.parts()
    done = [part for part in parts if part is not None]
    assert len(done) == HOSTS
    assert [p.counters.started for p in done] == [
        Share(i, HOSTS).sessions(sessions) for i in range(HOSTS)
    ]
    # What the server took is what the results say.
    assert c.messages_accepted == accepted_by_server == sessions
    assert final.replies[Step.DATA_END, 250] == c.messages_accepted
    assert_sum_of_parts(final, done)
    assert final.intervals is not None
    total = sum(final.intervals.latency_counts(i) for i in range(len(final.intervals)))
    np.testing.assert_array_equal(total, final.latency.counts)

    # Session numbers are run-wide: every one once, whichever host ran it.
    records = read_sessions(log)
    assert sorted(r["session"] for r in records) == list(range(sessions))
    hosts_of = [r["session"] % HOSTS for r in records]
    assert hosts_of == sorted(hosts_of)  # host after host

    rows = group.hosts()
    assert sorted(row.worker for row in rows) == sorted(w.address for w in cluster.workers)
    for row, part in zip(rows, done, strict=True):
        assert not row.lost and row.lost_at is None and row.lost_reason is None
        assert row.started == part.counters.started
        assert row.rate is not None and row.rate > 0
        assert row.cpu_seconds is not None and row.cpu_seconds > 0
        assert row.hostname and 0 <= row.round_trip < 1 and abs(row.clock_offset) < 0.05
    assert cluster.engine_processes() == []  # closed: every engine has exited
    assert [w.leftovers() for w in cluster.live_workers()] == [[]] * HOSTS  # nor its records


def test_the_files_a_scenario_names_go_with_the_run(cluster: DaskCluster, tmp_path: Path) -> None:
    here = tmp_path / "driver"
    here.mkdir()
    (here / "senders.csv").write_text("news@shop.test\n")
    (here / "body.txt").write_text("Hello from a file on the driver.\n")
    sessions = 20
    with counting_sink(keep_messages=True) as sink:
        host, port = sink.address
        job = cluster_job(
            host,
            port,
            rate=200,
            sessions=sessions,
            session=('senders_file = "senders.csv"',),
            tables='[content]\nbody_file = "body.txt"',
            folder=here,
        )
        group = ClusterGroup(job_files.pack(job), ClusterSettings(cluster.address))
        shutil.rmtree(here)  # the hosts read their own copies
        final = run_to_end(group)
        messages = list(sink.messages)
    assert final.counters.messages_accepted == sessions == len(messages)
    assert group.error is None
    assert {m.mail_from for m in messages} == {"news@shop.test"}
    assert all(m.data and b"Hello from a file on the driver." in m.data for m in messages)
    assert [w.leftovers() for w in cluster.live_workers()] == [[]] * HOSTS


@pytest.mark.postfix
def test_postfix_smtp_sink_takes_what_the_results_say(cluster: DaskCluster) -> None:
    sessions = 200
    with postfix_smtp_sink() as sink:
        job = cluster_job(LOOPBACK, sink.port, rate=200, sessions=sessions)
        group = ClusterGroup(job, ClusterSettings(cluster.address, workers=2))
        assert group.workers == 2
        final = run_to_end(group)
        delivered = sink.delivered_once(sessions)
    assert final.counters.started == sessions
    assert final.counters.messages_accepted == delivered == sessions
    parts = [part for part in group.parts() if part is not None]
    assert [p.counters.started for p in parts] == [100, 100]
    assert_sum_of_parts(final, parts)


def test_the_hosts_taken_are_those_asked_for_and_no_more_than_the_load_uses(
    cluster: DaskCluster,
) -> None:
    def hosts_taken(sessions: int, **settings: int) -> tuple[int, list[str]]:
        group = ClusterGroup(
            cluster_job(host, port, rate=200, sessions=sessions),
            ClusterSettings(cluster.address, **settings),
        )
        group.close()  # never started: the actors go again
        return group.workers, group.warnings

    with counting_sink() as sink:
        host, port = sink.address
        assert hosts_taken(100, workers=1) == (1, [])
        assert hosts_taken(100, per_host=1) == (HOSTS, [])  # each worker has a host of its own
        assert hosts_taken(2) == (2, [])  # two sessions: two workers at most
        taken, warnings = hosts_taken(100, workers=HOSTS + 2)
        assert taken == HOSTS
        assert warnings == [f"{HOSTS + 2} workers asked for; the cluster offers {HOSTS}, all taken"]
    assert cluster.engine_processes() == []


def test_a_host_that_cannot_reach_the_target_stops_the_run_before_it_starts(
    cluster: DaskCluster,
) -> None:
    job = cluster_job(LOOPBACK, free_port(), rate=200, sessions=100)  # nothing listens
    with pytest.raises(ClusterError) as raised:
        ClusterGroup(job, ClusterSettings(cluster.address))
    lines = str(raised.value).splitlines()
    assert len(lines) == HOSTS
    for worker in cluster.live_workers():
        line = next(line for line in lines if line.startswith(worker.address))
        assert "cannot connect to the target" in line
        assert f"({os.uname().nodename})" in line
    assert cluster.engine_processes() == []


def test_no_scheduler_and_no_workers_are_said_plainly(tmp_path: Path) -> None:
    job = cluster_job(LOOPBACK, free_port(), rate=200, sessions=100)
    nowhere = f"tcp://{LOOPBACK}:{free_port()}"
    began = time.monotonic()
    with pytest.raises(
        ClusterError, match=f"cannot connect to the scheduler at {nowhere} within 1s"
    ):
        ClusterGroup(job, ClusterSettings(nowhere, connect_timeout=1))
    assert time.monotonic() - began < 10
    empty = DaskCluster.start(tmp_path, 0)
    try:
        with pytest.raises(ClusterError, match="has no workers"):
            ClusterGroup(job, ClusterSettings(empty.address))
    finally:
        assert empty.stop() == []


def test_the_group_steers_every_host(cluster: DaskCluster) -> None:
    def state() -> RunState | None:
        snapshot = group.snapshot()
        return snapshot.state if snapshot is not None else None

    with counting_sink() as sink:
        host, port = sink.address
        group = ClusterGroup(
            cluster_job(host, port, rate=100, duration=30), ClusterSettings(cluster.address)
        )
        # What the dashboard's header and the headless first line say of it: the
        # workers' addresses are all on this machine, so one host.
        assert where(group) == f"cluster: {HOSTS} engines on 1 host"
        assert describe(group) == f", {HOSTS} engines on 1 host of the cluster at {cluster.address}"
        group.start()
        try:
            wait_until(lambda: started(group) > 20, "sessions started")
            group.pause()
            wait_until(lambda: state() is RunState.PAUSED, "every host paused")
            held = started(group)
            time.sleep(0.6)  # a measure: nothing may start on any host meanwhile
            assert started(group) == held
            group.resume()
            group.scale_rate(2.0)
            wait_until(lambda: (group.snapshot().target_rate or 0) > 199, "the rate doubled")
            assert group.snapshot().target_rate == pytest.approx(200)
            wait_until(lambda: started(group) > held + 20, "sessions started again")
            group.interrupt()
            final = group.wait(LIMIT)
        finally:
            group.close()
    assert final is not None and group.error is None
    assert final.state is RunState.INTERRUPTED
    assert final.counters.messages_accepted == final.counters.started < 30 * 200
    assert all(p is not None and p.state is RunState.INTERRUPTED for p in group.parts())


def test_an_engine_that_dies_stops_the_others(cluster: DaskCluster) -> None:
    with counting_sink() as sink:
        host, port = sink.address
        group = ClusterGroup(
            cluster_job(host, port, rate=200, duration=3), ClusterSettings(cluster.address)
        )
        group.start()
        try:
            wait_until(lambda: started(group) > 100, "sessions started")
            victim = group.hosts()[1]
            engine = next(
                p
                for w in cluster.workers
                if w.address == victim.worker
                for p in cluster.engine_processes()
                if p.ppid() == w.process.pid
            )
            engine.send_signal(signal.SIGKILL)
            final = group.wait(LIMIT)
        finally:
            group.close()
    assert final is not None
    assert group.lost_workers == [1]
    assert group.error is not None
    assert victim.worker in group.error and "killed by SIGKILL" in group.error
    # The others were interrupted before the end: fewer sessions than the 600 planned.
    assert final.state is RunState.INTERRUPTED
    assert final.counters.started < 600
    parts = group.parts()
    assert parts[1] is None and all(p is not None for i, p in enumerate(parts) if i != 1)
    assert all(p.state is RunState.INTERRUPTED for p in parts if p is not None)


def test_a_host_killed_mid_run_is_named_and_the_rest_carry_on(cluster: DaskCluster) -> None:
    extra = cluster.add_worker()
    hosts = len(cluster.live_workers())
    rate, duration = 200, 5
    with counting_sink() as sink:
        host, port = sink.address
        settings = ClusterSettings(cluster.address, on_host_loss="continue")
        group = ClusterGroup(cluster_job(host, port, rate=rate, duration=duration), settings)
        assert group.workers == hosts
        index = next(row.index for row in group.hosts() if row.worker == extra.address)
        group.start()
        try:
            wait_until(lambda: started(group) > 200, "sessions started")
            engines = [p for p in cluster.engine_processes() if p.ppid() == extra.process.pid]
            assert len(engines) == 1
            killed = time.monotonic()
            extra.kill()
            wait_until(lambda: group.lost_workers != [], "the host noticed lost", 15)
            noticed = time.monotonic() - killed
            final = group.wait(LIMIT)
        finally:
            group.close()
        accepted_by_server = sink.stats.messages_accepted
    assert wait_gone(engines, 10) == [], "the killed host's engine outlived it"
    assert noticed < 10
    assert final is not None
    assert group.lost_workers == [index]
    assert group.error is not None
    assert extra.address in group.error and "into the run" in group.error
    row = group.hosts()[index]
    assert row.lost and row.lost_at is not None and 0 < row.lost_at < duration
    assert row.lost_reason
    # The rest ran their whole share; the merge keeps what the lost host last sent.
    parts = group.parts()
    assert parts[index] is None
    for i, part in enumerate(parts):
        if i != index:
            assert part is not None and part.state is RunState.DONE
            assert part.counters.started == Share(i, hosts).sessions(rate * duration)
    assert final.state is RunState.INTERRUPTED
    others = sum(p.counters.started for p in parts if p is not None)
    assert others < final.counters.started < rate * duration
    assert accepted_by_server >= final.counters.messages_accepted


def test_when_the_driver_dies_every_engine_stops(cluster: DaskCluster) -> None:
    with counting_sink() as sink:
        host, port = sink.address
        code = "import sys; from tests.dask_cluster import drive; drive(*sys.argv[1:])"
        driver = subprocess.Popen(
            [sys.executable, "-c", code, cluster.address, host, str(port)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert driver.stdout is not None
            ready, _, _ = select.select([driver.stdout], [], [], LIMIT)
            assert ready and driver.stdout.readline().strip() == b"started"
            engines = cluster.engine_processes()
            assert len(engines) == len(cluster.live_workers())
            driver.send_signal(signal.SIGKILL)
            killed = time.monotonic()
        finally:
            driver.kill()
            driver.wait(LIMIT)
        alive = wait_gone(engines, 10 - (time.monotonic() - killed))
        stopped = time.monotonic() - killed
        assert alive == [], f"engines still running {stopped:.1f}s after the driver died"
        assert stopped < 10
        connections = sink.stats.connections
        time.sleep(0.5)  # a measure: no connection may come after the engines are gone
        assert sink.stats.connections == connections
    assert [w.leftovers() for w in cluster.live_workers()] == [[]] * len(engines)
    print(f"every engine stopped {stopped:.1f}s after the driver died")
