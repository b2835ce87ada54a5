"""`smtpbench run --cluster` as an operator types it: a Dask scheduler and workers as
separate processes on loopback addresses of their own (each worker a "host"), the
embedded sink or Postfix's smtp-sink as the server. The summary, the results folder,
`report` and the per-host table agree with each other and with the server; a host
killed mid-run gives a partial run that names it, with the rest of the results kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import distributed  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the test extra: a missing Dask fails there instead of hiding
    pytest.skip("Dask's distributed is not installed (the dask extra)", allow_module_level=True)

from smtpbench import exitcodes
from smtpbench.metrics.sessions import read_sessions
from smtpbench.run.prepare import ON_CLUSTER
from tests.dask_cluster import LIMIT, ROOT, DaskCluster, counting_sink
from tests.servers import LOOPBACK, postfix_smtp_sink

pytestmark = pytest.mark.end_to_end

HOSTS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    started = DaskCluster.start(tmp_path_factory.mktemp("cluster-run"), HOSTS)
    try:
        yield started
    finally:
        assert started.stop() == []  # nothing outlived its worker


def smtpbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def only_folder(base: Path) -> Path:
    (folder,) = [p for p in base.iterdir() if p.is_dir()]
    return folder


def test_run_on_the_cluster_against_the_embedded_sink(cluster: DaskCluster, tmp_path: Path) -> None:
    run = smtpbench(
        "run", "--headless", "--cluster", cluster.address, "--rate", "200",
        "--sessions", "300", "--record-sessions", "--out", str(tmp_path),
    )  # fmt: skip
    assert run.returncode == exitcodes.OK, run.stderr + run.stdout
    assert f"{HOSTS} engines on 1 host of the cluster at {cluster.address}" in " ".join(
        run.stdout.split()
    )
    folder = only_folder(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    counters = summary["counters"]
    assert counters["started"] == 300 and counters["messages_accepted"] == 300
    # The hosts run what they have installed: the driver does not vouch for their build.
    assert summary["info"]["engine"] == ON_CLUSTER
    hosts = json.loads((folder / "hosts.json").read_text())
    assert hosts["cluster"] == cluster.address and hosts["partial"] is False
    engines = hosts["engines"]
    assert sorted(e["worker"] for e in engines) == sorted(w.address for w in cluster.workers)
    assert [e["started"] for e in sorted(engines, key=lambda e: e["index"])] == [150, 150]
    # Session numbers are the run's: every one exactly once across the hosts.
    numbers = [record["session"] for record in read_sessions(folder / "sessions.ndjson")]
    assert sorted(numbers) == list(range(300))
    # The folder reads back, the hosts table with it.
    report = smtpbench("report", str(folder))
    assert report.returncode == exitcodes.OK, report.stderr
    assert f"Hosts ({cluster.address})" in report.stdout
    assert cluster.engine_processes() == []


@pytest.mark.postfix
def test_run_on_the_cluster_against_postfix_smtp_sink(cluster: DaskCluster, tmp_path: Path) -> None:
    with postfix_smtp_sink() as sink:
        run = smtpbench(
            "run", "--headless", "--cluster", cluster.address, "--target",
            f"{LOOPBACK}:{sink.port}", "--rate", "200", "--sessions", "200",
            "--out", str(tmp_path),
        )  # fmt: skip
        delivered = sink.delivered_once(200)
    assert run.returncode == exitcodes.OK, run.stderr + run.stdout
    summary = json.loads((only_folder(tmp_path) / "summary.json").read_text())
    assert summary["counters"]["messages_accepted"] == delivered == 200


def test_a_scenarios_files_reach_the_hosts_with_the_run(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "senders.csv").write_text("news@shop.test\n")
    scenario = lists / "s.toml"
    scenario.write_text(
        'name = "lists"\n[load]\nrate = 100\nsessions = 40\n[session]\nrecipients = 1\n'
        'senders_file = "senders.csv"\n'
    )
    with counting_sink() as sink:
        host, port = sink.address
        run = smtpbench(
            "run", str(scenario), "--headless", "--cluster", cluster.address, "--target",
            f"{host}:{port}", "--record-sessions", "--out", str(tmp_path / "out"),
        )  # fmt: skip
        accepted = sink.stats.messages_accepted
    assert run.returncode == exitcodes.OK, run.stderr + run.stdout
    assert accepted == 40


def test_a_host_killed_mid_run_gives_a_partial_run_that_names_it(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    victim = cluster.add_worker()
    try:
        with counting_sink() as sink:
            host, port = sink.address
            driver = subprocess.Popen(
                [
                    sys.executable, "-m", "smtpbench", "run", "--headless", "--cluster",
                    cluster.address, "--target", f"{host}:{port}", "--rate", "100",
                    "--duration", "30s", "--on-host-loss", "continue",
                    "--progress-interval", "0.2", "--out", str(tmp_path),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
            )  # fmt: skip
            assert driver.stdout is not None
            deadline = time.monotonic() + LIMIT
            while sink.stats.messages_accepted < 50:  # the run is well under way
                assert driver.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            victim.kill()
            # The others go on (--on-host-loss continue) until the operator stops the run.
            later = sink.stats.messages_accepted + 100
            while sink.stats.messages_accepted < later:
                assert driver.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            driver.send_signal(signal.SIGINT)
            output, _ = driver.communicate(timeout=LIMIT)
        assert driver.returncode == exitcodes.WORKER_LOST, output
        assert victim.address in output
        folder = only_folder(tmp_path)
        hosts = json.loads((folder / "hosts.json").read_text())
        assert hosts["partial"] is True
        (lost,) = [e for e in hosts["engines"] if e["lost"]]
        assert lost["worker"] == victim.address and lost["lost_at"] is not None
        survivors = [e for e in hosts["engines"] if not e["lost"]]
        assert len(survivors) == HOSTS and all(e["started"] > 0 for e in survivors)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["counters"]["started"] == sum(e["started"] for e in hosts["engines"])
        report = smtpbench("report", str(folder))
        assert report.returncode == exitcodes.OK and "partial run" in report.stdout
    finally:
        victim.kill()
    assert cluster.engine_processes() == []


def test_replay_on_the_cluster_shares_the_recorded_sessions_between_hosts(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    recording = tmp_path / "only-here.jsonl"
    recording.write_bytes((ROOT / "scenarios" / "recordings" / "default-sink.jsonl").read_bytes())
    out = tmp_path / "out"
    run = smtpbench(
        "replay", str(recording), "--headless", "--cluster", cluster.address,
        "--speed", "20", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == exitcodes.OK, run.stderr + run.stdout
    folder = only_folder(out)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counters"]["started"] == 20
    hosts = json.loads((folder / "hosts.json").read_text())
    assert sorted(e["started"] for e in hosts["engines"]) == [10, 10]


def test_a_capacity_search_over_the_cluster(cluster: DaskCluster, tmp_path: Path) -> None:
    """The search steers the cluster's engines step by step, as it does local ones: our
    sink serving 150 messages a second is found between 120/s and 180/s, and the results
    say which hosts ran it."""
    command = [sys.executable, "-m", "smtpbench", "sink", "--listen", f"{LOOPBACK}:0"]
    sink = subprocess.Popen(
        [*command, "--capacity", "150/s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert sink.stdout is not None
        deadline = time.monotonic() + LIMIT
        port = 0
        while not port and time.monotonic() < deadline:
            line = sink.stdout.readline()
            if "listening on" in line:
                port = int(line.strip().rsplit(":", 1)[1])
        assert port, "the sink did not start"
        done = smtpbench(
            "capacity", "--headless", "--cluster", cluster.address, "--target",
            f"{LOOPBACK}:{port}", "--from", "60/s", "--step", "60/s", "--to", "300/s",
            "--step-duration", "3s", "--settle", "1s",
            "--threshold", "p99(DATA end) < 200ms", "--out", str(tmp_path),
        )  # fmt: skip
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=10)
    said = " ".join(done.stdout.split())
    assert done.returncode == exitcodes.OK, done.stderr + done.stdout
    assert f"{HOSTS} engines on 1 host of the cluster at {cluster.address}" in said
    folder = only_folder(tmp_path)
    found = json.loads((folder / "capacity.json").read_text())
    assert (found["held"], found["broke"]) == (120, 180), found["conclusion"]
    assert found["limit"] == "server"
    # The engines' CPU is read from the hosts' reports (no wait for a CPU across machines).
    assert all(0 < step["engine_cpu"] < 1 for step in found["steps"]), found["steps"]
    assert all(step["engine_cpu_wait"] is None for step in found["steps"])
    hosts = json.loads((folder / "hosts.json").read_text())
    assert hosts["cluster"] == cluster.address and hosts["partial"] is False
    summary = json.loads((folder / "summary.json").read_text())
    assert sum(e["started"] for e in hosts["engines"]) == summary["counters"]["started"] > 0
    assert f"Hosts ({cluster.address})" in done.stdout
    assert cluster.engine_processes() == []
