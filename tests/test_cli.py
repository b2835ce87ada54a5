"""The smtpbench command as a user runs it, in a subprocess without a terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.commands.flags import parse_host_port
from smtpbench.metrics.results import read_results

ROOT = Path(__file__).resolve().parent.parent


def smtpbench(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)},
    )


def only_results_folder(base: Path) -> Path:
    [folder] = list(base.iterdir())
    return folder


def test_run_against_the_embedded_sink_then_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = smtpbench(
        "run",
        "--duration",
        "3s",
        "--rate",
        "20",
        "--out",
        str(out),
        "--progress-interval",
        "1s",
        cwd=ROOT,
    )
    assert run.returncode == exitcodes.OK, run.stderr
    lines = run.stdout.splitlines()
    live = [line for line in lines if "achieved" in line and "started" in line]
    assert len(live) >= 2  # live lines while it ran
    assert "Service time per command" in run.stdout
    assert "Reply codes per command" in run.stdout
    assert "Requested mail action okay, completed" in run.stdout
    folder = only_results_folder(out)
    assert folder.name.endswith("-default")
    assert {p.name for p in folder.iterdir()} == {"summary.json", "metrics.npz", "scenario.toml"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["format"] == "smtpbench-results" and summary["version"] == 1
    assert summary["state"] == "done"
    assert summary["counters"]["started"] == 60
    assert summary["counters"]["messages_accepted"] == 60
    assert summary["latency"]["DATA end"]["view"] == "service"
    assert summary["latency"]["message"]["view"] == "from intended start"
    snapshot = read_results(folder)
    assert snapshot.counters.messages_accepted == 60

    report = smtpbench("report", str(folder), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # The offline report shows the same tables and figures.
    for line in run.stdout[run.stdout.index("Service time") :].splitlines()[:12]:
        assert line in report.stdout

    # The resolved scenario runs again as it is, with the same seed.
    again = smtpbench(
        "run",
        str(folder / "scenario.toml"),
        "--duration",
        "1s",
        "--out",
        str(tmp_path / "again"),
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    seed = summary["info"]["seed"]
    assert (
        json.loads((only_results_folder(tmp_path / "again") / "summary.json").read_text())["info"][
            "seed"
        ]
        == seed
    )


def test_sigterm_still_writes_results_marked_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smtpbench",
            "run",
            "--duration",
            "60s",
            "--rate",
            "20",
            "--out",
            str(out),
            "--progress-interval",
            "0.5s",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until sessions are flowing
        line = process.stdout.readline()
        if "achieved" in line:
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == exitcodes.INTERRUPTED, stderr
    assert "SIGTERM: stopping" in stdout
    snapshot = read_results(only_results_folder(out))
    assert snapshot.state.value == "interrupted"
    assert snapshot.counters.started > 0
    assert snapshot.counters.messages_accepted == snapshot.counters.started


def test_a_broken_scenario_names_the_file_and_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[load]\nrate = "fast"\n')
    result = smtpbench("run", str(broken), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == exitcodes.BAD_CONFIGURATION
    assert "broken.toml" in result.stderr
    assert "load.rate" in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_unknown_scenario_name_lists_the_known_ones(tmp_path: Path) -> None:
    result = smtpbench("run", "no-such-scenario", cwd=ROOT)
    assert result.returncode == exitcodes.BAD_CONFIGURATION
    assert "no-such-scenario" in result.stderr
    assert "newsletter-burst" in result.stderr


def test_report_on_a_folder_that_is_not_results(tmp_path: Path) -> None:
    result = smtpbench("report", str(tmp_path), cwd=tmp_path)
    assert result.returncode == exitcodes.BAD_CONFIGURATION
    assert "summary.json" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.net", ("mx.example.net", 25)),
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:2525", ("::1", 2525)),
        ("::1", ("::1", 25)),
    ],
)
def test_host_port_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:port", ":25", "[::1]x", "h:70000"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)
