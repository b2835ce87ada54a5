"""Scenarios built in code are checked like scenario files: a session with no recipient
or NOOP odds above 1 is refused however it was made."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.scenario import IntRange, ScenarioError, Session, parse_scenario


def test_a_session_built_in_code_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least 1 recipient"):
        Session(recipients=IntRange(0, 0))


def test_noop_odds_are_checked_when_built_in_code() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Session(noop=1.5)


def test_replacing_a_field_is_checked_too() -> None:
    session = Session()
    with pytest.raises(ValueError, match="at least 1 recipient"):
        dataclasses.replace(session, recipients=IntRange(0, 2))


def test_an_unknown_key_names_its_table() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario('[load]\nduraton = "5s"\n', file="broken.toml")
    message = str(caught.value)
    assert "unknown key in [load]" in message
    assert "did you mean 'duration'?" in message


def test_the_command_prints_the_table_name(tmp_path: Path) -> None:
    """Rich markup would eat "[load]" from the message."""
    broken = tmp_path / "broken.toml"
    broken.write_text('[load]\nduraton = "5s"\n')
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "run", str(broken), "--headless"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert "load.duraton: unknown key in [load]; did you mean 'duration'?" in " ".join(
        done.stderr.split()
    )
