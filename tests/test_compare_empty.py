"""`compare` against a run that delivered nothing (every session refused): a rule the
new run cannot be checked on fails with the reason; a rule that matches nothing in any
run is a configuration error. The command as a user runs it, at 80 columns, no terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.metrics.results import write_results
from smtpbench.metrics.snapshot import Snapshot
from tests.runs import run_against, scenario_for
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _delivered() -> Snapshot:
    async with embedded_sink([]) as (_, port):
        with trio.fail_after(60):
            return await run_against(scenario_for(port, rate=50, sessions=20))


async def _refused() -> Snapshot:
    with trio.fail_after(60):
        return await run_against(scenario_for(free_port(), rate=50, sessions=5))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compare-empty")
    good = base / "results" / "20261201-101500-newsletter-burst-delivered"
    empty = base / "results" / "20261201-102000-newsletter-burst-all-refused"
    write_results(good, trio.run(_delivered), 'name = "default"\n')
    write_results(empty, trio.run(_refused), 'name = "default"\n')
    return good, empty


def compare(folders: tuple[Path, Path], *rules: str) -> subprocess.CompletedProcess[str]:
    good, empty = folders
    args = [arg for rule in rules for arg in ("--fail-if", rule)]
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", "compare", str(good), str(empty), *args],
        cwd=good.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )


def test_every_command_missing_from_the_new_run_fails(folders: tuple[Path, Path]) -> None:
    done = compare(folders, "p99 +10%")
    assert done.returncode == exitcodes.THRESHOLDS_FAILED, done.stdout + done.stderr
    out = done.stdout
    assert "checks passed" not in out
    assert "p99(DATA end)" in out and "B has none" in out
    assert "no data" in out


def test_a_named_command_missing_from_the_new_run_fails(folders: tuple[Path, Path]) -> None:
    done = compare(folders, "p99(DATA) +10%")
    assert done.returncode == exitcodes.THRESHOLDS_FAILED, done.stdout + done.stderr
    assert "Regression rules: 1 of 1 checks failed" in done.stdout
    assert "B has none" in done.stdout


def test_a_rule_that_matches_nothing_is_a_configuration_error(
    folders: tuple[Path, Path],
) -> None:
    done = compare(folders, "p99(VRFY) +10%")
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert "--fail-if 'p99(VRFY) +10%': matches nothing" in " ".join(done.stderr.split())


def test_throughput_down_to_nothing_fails(folders: tuple[Path, Path]) -> None:
    done = compare(folders, "throughput -5%")
    assert done.returncode == exitcodes.THRESHOLDS_FAILED


def test_names_and_numbers_are_never_cut_outside_a_terminal(
    folders: tuple[Path, Path],
) -> None:
    good, empty = folders
    done = compare(folders)
    assert "…" not in done.stdout
    assert f"results/{good.name}" in done.stdout and f"results/{empty.name}" in done.stdout
    for folder in folders:
        report = subprocess.run(
            [sys.executable, "-m", "smtpbench", "report", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
        )
        assert report.returncode == exitcodes.OK, report.stderr
        assert "…" not in report.stdout
    assert "100.0%" in report.stdout  # the refused run's connect errors, whole
    assert "connection refused" in report.stdout
