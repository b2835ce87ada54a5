"""A run that reaches nothing, or where nothing succeeds, never reads as a pass: the
command as a user runs it, without a terminal, at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from smtpbench import exitcodes
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def smtpbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def summary_of(out: Path) -> dict[str, object]:
    [folder] = list(out.iterdir())
    return json.loads((folder / "summary.json").read_text())  # type: ignore[no-any-return]


def test_nothing_listening_stops_early_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "results"
    # An hour is planned: only the early stop lets this return.
    done = smtpbench(
        "run", "--target", f"127.0.0.1:{port}", "--rate", "20", "--duration", "1h",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == exitcodes.TARGET_UNUSABLE, done.stderr
    text = one_line(done.stdout)
    assert f"nothing is listening on 127.0.0.1:{port}" in text
    assert "stopping the run (--keep-going runs on anyway)" in text
    assert "no session ever connected" in text
    summary = summary_of(out)
    assert summary["state"] == "interrupted"


def test_keep_going_runs_on_but_a_run_where_everything_failed_is_not_a_pass(
    tmp_path: Path,
) -> None:
    port = free_port()
    out = tmp_path / "results"
    done = smtpbench(
        "run", "--target", f"127.0.0.1:{port}", "--sessions", "6", "--rate", "20",
        "--keep-going", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == exitcodes.THRESHOLDS_FAILED, done.stderr
    text = one_line(done.stdout)
    assert "stopping the run" not in text
    assert "every session failed (6 of 6)" in text
    assert summary_of(out)["counters"]["started"] == 6  # type: ignore[index]


def test_every_session_refused_by_the_server_fails_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "refusing.toml"
    scenario.write_text('[load]\nrate = 20\nsessions = 5\n\n[sink]\nreply.RCPT = "550:100%"\n')
    done = smtpbench("run", str(scenario), "--out", str(tmp_path / "results"), cwd=tmp_path)
    assert done.returncode == exitcodes.THRESHOLDS_FAILED, done.stderr
    assert "every session failed (5 of 5)" in one_line(done.stdout)


def test_a_run_that_connected_is_not_called_unusable(tmp_path: Path) -> None:
    done = smtpbench(
        "run", "--sessions", "3", "--rate", "20", "--out", str(tmp_path / "r"), cwd=tmp_path
    )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    assert "nothing is listening" not in done.stdout
