"""A run's asks checked against the machine before the first session: open files for
the sessions kept in flight, cores and memory for workers; --ignore-limits overrides."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.limits import Machine, check_run, open_files_needed
from smtpbench.metrics.results import read_results
from smtpbench.scenario import Load
from tests.commands import ENV, ROOT, TRACEBACK, smtpbench

GIB = 1024**3
SMALL = Machine(cores=2, open_files=(1024, 4096), memory_available=2 * GIB)


def closed(concurrency: int) -> Load:
    return Load(mode="concurrency", concurrency=concurrency, duration=1.0)


def test_open_files_follow_the_sessions_in_flight_of_the_busiest_process() -> None:
    assert open_files_needed(closed(1000), 1, embedded_sink=False) == 1064
    assert open_files_needed(closed(1000), 2, embedded_sink=False) == 564
    assert open_files_needed(closed(1000), 2, embedded_sink=True) == 1064  # the sink's
    assert open_files_needed(Load(rate=100.0, duration=1.0), 1, embedded_sink=False) == 64


def test_what_fits_passes() -> None:
    assert check_run(closed(2000), 2, True, SMALL) == []
    assert check_run(Load(rate=5000.0, duration=1.0), 2, False, SMALL) == []


def test_a_concurrency_past_the_hard_open_files_limit_is_refused_with_how_to_raise_it() -> None:
    [problem] = check_run(closed(100_000), 1, False, SMALL)
    assert problem.startswith("--concurrency 100,000 needs about 100,064 open files")
    assert "4,096 at most" in problem and "ulimit -Hn" in problem


def test_more_workers_than_cores_or_memory_are_refused() -> None:
    problems = check_run(Load(rate=100.0, duration=1.0), 1000, False, SMALL)
    assert problems[0].startswith("--workers 1,000: this machine has 2 cores")
    assert problems[1].startswith("1,000 worker processes need about 64,000 MiB of memory")


def test_run_refuses_before_anything_starts(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for flags in (["--concurrency", "1000000"], ["--workers", "1000", "--rate", "100"]):
        done = smtpbench("run", "--headless", *flags, "--duration", "1s", "--out", str(out))
        assert done.returncode == exitcodes.BAD_CONFIGURATION
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: --") and line.endswith("(--ignore-limits runs it anyway)")
        assert TRACEBACK not in done.stderr
    assert not out.exists()  # not even the output folder


def test_ignore_limits_runs_more_workers_than_cores(tmp_path: Path) -> None:
    workers = str(len(os.sched_getaffinity(0)) + 1)
    args = ["run", "--headless", "--workers", workers, "--sessions", "6", "--rate", "50"]
    refused = smtpbench(*args, "--out", str(tmp_path))
    assert refused.returncode == exitcodes.BAD_CONFIGURATION
    done = smtpbench(*args, "--out", str(tmp_path), "--ignore-limits")
    assert done.returncode == exitcodes.OK, done.stderr
    assert f"{workers} worker processes" in done.stdout
    [folder] = list(tmp_path.iterdir())
    assert read_results(folder).counters.started == 6


def test_a_low_soft_limit_is_lifted_for_the_run(tmp_path: Path) -> None:
    """600 sessions in flight with a soft limit of 256: lifted, none fails to connect."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 700:
        pytest.skip("the hard open files limit is too low for 600 sessions in flight")
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "run", "--headless", "--concurrency", "600",
         "--duration", "1s", "--out", str(tmp_path)],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stderr
    [folder] = list(tmp_path.iterdir())
    counters = read_results(folder).counters
    assert counters.started >= 600 and counters.failed == 0
