"""The example scenarios ship with the package: `run NAME` and `scenarios` work outside
the checkout, and a ./scenarios folder comes first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from smtpbench import exitcodes
from smtpbench.scenario import load_scenario
from smtpbench.scenario.loader import EXAMPLES_DIR

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = (
    "default",
    "newsletter-burst",
    "slow-trickle",
    "steady-relay",
    "corporate-mix",
    "greylisting-relay",
)


def smtpbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )


def test_every_example_is_in_the_package_and_reads() -> None:
    for name in EXAMPLES:
        assert (EXAMPLES_DIR / f"{name}.toml").is_file()
        assert load_scenario(name, search_dirs=(EXAMPLES_DIR,)).name == name


def test_scenarios_lists_the_examples_anywhere(tmp_path: Path) -> None:
    done = smtpbench("scenarios", cwd=tmp_path)
    assert done.returncode == exitcodes.OK, done.stderr
    for name in EXAMPLES:
        assert name in done.stdout
    assert "Ramp to 300 sessions/s" in done.stdout


def test_a_local_scenarios_folder_comes_first(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "newsletter-burst.toml").write_text(
        'name = "newsletter-burst"\ndescription = "our own burst"\n'
    )
    assert load_scenario("newsletter-burst", search_dirs=(tmp_path / "scenarios", EXAMPLES_DIR))
    done = smtpbench("scenarios", cwd=tmp_path)
    assert "our own burst" in done.stdout
    assert "scenarios/newsletter-burst.toml" in done.stdout


def test_run_an_example_by_name_outside_the_checkout(tmp_path: Path) -> None:
    done = smtpbench(
        "run", "newsletter-burst", "--sessions", "2", "--rate", "20", "--out",
        str(tmp_path / "results"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    assert "newsletter-burst" in done.stdout


def test_an_unknown_name_lists_the_examples(tmp_path: Path) -> None:
    done = smtpbench("run", "newsleter-burst", cwd=tmp_path)
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert f"available: {', '.join(sorted(EXAMPLES))}" in " ".join(done.stderr.split())
