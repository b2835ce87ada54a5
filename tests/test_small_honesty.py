"""Small things that misled: results folders named by when the run started, clocks to
the nearest second, descriptions that say what the command line changed, failures
newest first, one rounding for every output, and negative values named by their flag."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.cli import negative_values_joined
from smtpbench.outcome import finish_run
from smtpbench.report.summary import failures_table
from smtpbench.scenario import default_scenario, with_overrides
from smtpbench.units import format_clock, format_duration
from tests.fake_engine import synthetic_snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_the_results_folder_is_named_by_the_start_of_the_run(tmp_path: Path) -> None:
    snapshot = synthetic_snapshot(seconds=5)  # started 2026-11-30 09:00:00
    outcome = finish_run(tmp_path, default_scenario(), snapshot)
    assert outcome.folder.name.startswith("20261130-090000-")


def test_a_20_second_run_reads_20_seconds() -> None:
    assert format_clock(19.98) == "00:00:20"
    assert format_clock(0.2) == "00:00:00"


def test_overrides_say_what_they_changed_in_the_description() -> None:
    scenario = dataclasses.replace(default_scenario(), description="300/s against the sink")
    changed = with_overrides(scenario, rate="30", host="mx.test.lan", port=2525)
    assert changed.description == (
        "300/s against the sink (as run, changed on the command line: "
        "--target mx.test.lan:2525, --rate 30)"
    )
    assert with_overrides(scenario, seed=3).description == scenario.description


def test_recent_failures_are_newest_first_as_on_the_dashboard() -> None:
    table = failures_table(synthetic_snapshot(seconds=3))
    assert table is not None
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    text = console.export_text()
    assert "newest first" in text
    assert text.index("#48213") < text.index("#48102")


@pytest.mark.parametrize("value", [0.00019250000000000002, 0.0001925, 0.0425, 2.5e-3])
def test_a_value_prints_the_same_before_and_after_the_results_files(value: float) -> None:
    stored = round(value, 9)  # as summary.json and the exports keep it
    assert format_duration(value) == format_duration(stored)


def test_a_negative_value_reaches_its_flag() -> None:
    assert negative_values_joined(["run", "--duration", "-5s"]) == ["run", "--duration=-5s"]
    assert negative_values_joined(["run", "--headless", "x"]) == ["run", "--headless", "x"]
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "run", "--duration", "-5s", "--headless"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert "expected one argument" not in done.stderr
    assert "'-5s'" in done.stderr
