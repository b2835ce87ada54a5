"""Real processes and real signals: `run` and its children (the embedded sink, worker
processes) end together however `run` ends, SIGHUP stops a run as SIGTERM does, and a
killed worker is named, with how it died and what is missing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from tests.commands import TRACEBACK, children_of, read_until, start_smtpbench, wait_gone

TIMEOUT = 30


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(run: subprocess.Popen[str]) -> tuple[list[int], list[int]]:
    """(sink, workers) process ids of a run."""
    pids = children_of(run.pid)
    sinks = [pid for pid in pids if " sink " in _command_line(pid)]
    workers = [pid for pid in pids if "multiprocessing" in _command_line(pid)]
    return sinks, workers


def _wait_for_children(run: subprocess.Popen[str], workers: int) -> tuple[int, list[int]]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        sinks, found = _children(run)
        if sinks and len(found) >= workers:
            return sinks[0], found
        time.sleep(0.05)
    raise AssertionError(f"no sink and {workers} workers under {run.pid}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _sink_port(started: str) -> int:
    return int(started.split("against embedded sink ")[1].split()[0].rstrip(",").rsplit(":", 1)[1])


def _start_run(out: Path, *flags: str) -> subprocess.Popen[str]:
    return start_smtpbench(
        "run", "--headless", "--rate", "40", "--duration", "60s", "--progress-interval", "0.5s",
        "--out", str(out), *flags,
    )  # fmt: skip


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killing_run_takes_its_sink_and_workers_with_it(tmp_path: Path, workers: str) -> None:
    run = _start_run(tmp_path, "--workers", workers)
    try:
        port = _sink_port(read_until(run, "against embedded sink"))
        read_until(run, "started")  # a live line: the load is on
        sink, engine = _wait_for_children(run, 0 if workers == "1" else 2)
        run.kill()
        run.wait(TIMEOUT)
        assert wait_gone(sink), "the embedded sink outlived run"
        for pid in engine:
            assert wait_gone(pid), f"worker {pid} outlived run"
        assert not _listening(port)
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate(timeout=TIMEOUT)


def test_sighup_stops_a_run_like_sigterm_and_keeps_the_results(tmp_path: Path) -> None:
    run = _start_run(tmp_path)
    try:
        read_until(run, "started")
        sink, _ = _wait_for_children(run, 0)
        run.send_signal(signal.SIGHUP)
        out, errors = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=TIMEOUT)
    assert run.returncode == exitcodes.INTERRUPTED, errors
    assert "SIGHUP: stopping" in out
    assert TRACEBACK not in errors
    assert wait_gone(sink)
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert read_results(folder).counters.started > 0


def test_a_killed_worker_is_named_with_how_it_died_and_what_is_missing(tmp_path: Path) -> None:
    run = _start_run(tmp_path, "--workers", "2")
    try:
        read_until(run, "started")
        sink, workers = _wait_for_children(run, 2)
        time.sleep(1.0)  # a few snapshots from each
        victim = workers[1]
        os.kill(victim, signal.SIGKILL)
        out, errors = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=TIMEOUT)
    said = " ".join((out + errors).split())
    assert run.returncode == exitcodes.WORKER_LOST, said[-2000:]
    assert TRACEBACK not in errors
    assert f"engine process {victim} was killed by SIGKILL; it had started" in said
    assert "what it did after that is missing" in said
    assert " of 2: " in said  # which worker, of how many
    assert wait_gone(sink)
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert read_results(folder).counters.started > 0


def test_an_engine_that_cannot_build_its_run_says_why(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the parent's checks cannot see (here: AUTH credentials looked up in the
    engine's own environment, as on another host of a cluster) fails the engine as it
    starts: the parent is told why, with no traceback."""
    from dataclasses import replace

    from smtpbench.engine.process import EngineJob, EngineProcess
    from smtpbench.engine.transport import Address
    from smtpbench.run.prepare import run_info
    from smtpbench.scenario import default_scenario, scenario_to_toml, with_overrides
    from smtpbench.scenario.model import Auth

    unset = "SMTPBENCH_TEST_NEVER_SET_USER"
    assert unset not in os.environ
    scenario = with_overrides(default_scenario(), rate=10, duration=1, seed=1)
    scenario = replace(scenario, auth=Auth(mechanism="PLAIN", username_env=unset))
    address = Address("127.0.0.1", 9, socket.AF_INET, ("127.0.0.1", 9))
    info = run_info(scenario, str(address), 1)
    engine = EngineProcess(EngineJob(scenario_to_toml(scenario), address, 1, info))
    engine.start()
    try:
        assert engine.wait(30) is None
    finally:
        engine.close()
    assert engine.error is not None
    assert engine.error.startswith(f"engine process {engine._process.pid} could not start: ")
    said = "AUTH PLAIN needs a user name: set auth.username in the scenario or the environment"
    assert f"{said} variable {unset}" in engine.error
    assert TRACEBACK not in capfd.readouterr().err
