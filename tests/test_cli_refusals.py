"""Command-line mistakes caught before a run, each a one-line error naming where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.commands.flags import parse_host_port
from tests.commands import TRACEBACK, smtpbench


@pytest.mark.parametrize("text", ["[::1", "[::1:25", "[127.0.0.1"])
def test_an_unclosed_bracket_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"the \] is missing"):
        parse_host_port(text)


def test_run_refuses_an_unclosed_bracket(tmp_path: Path) -> None:
    run = smtpbench("run", "--headless", "--target", "[::1", "--out", str(tmp_path))
    assert run.returncode == exitcodes.BAD_CONFIGURATION
    assert run.stderr.strip() == "error: expected [ADDRESS]:PORT, got '[::1': the ] is missing"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[tls]\nmode = "starttls"\nca_file = "missing.pem"\n', "tls.ca_file: cannot load"),
        ('[auth]\nmechanism = "PLAIN"\n', "AUTH PLAIN needs a user name"),
    ],
)
def test_tls_and_auth_errors_name_the_scenario_file(tmp_path: Path, toml: str, said: str) -> None:
    scenario = tmp_path / "mine.toml"
    scenario.write_text(toml)
    run = smtpbench(
        "run",
        "--headless",
        str(scenario),
        "--sessions",
        "1",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert run.returncode == exitcodes.BAD_CONFIGURATION
    [line] = run.stderr.strip().splitlines()
    assert line.startswith(f"error: {scenario}: ") and said in line
    assert TRACEBACK not in run.stderr


def test_a_sink_table_with_a_command_line_target_is_said_to_be_ignored(tmp_path: Path) -> None:
    scenario = tmp_path / "faulty.toml"
    scenario.write_text('[sink]\ndelay = { DATA = "5ms" }\n')
    # Port 9 on loopback: nothing listens, so the run ends at once; the note comes first.
    run = smtpbench(
        "run",
        "--headless",
        str(scenario),
        "--target",
        "127.0.0.1:9",
        "--sessions",
        "1",
        "--out",
        str(tmp_path / "out"),
    )
    assert (
        f"note: {scenario}: sink: the faults of [sink] apply to the embedded sink; ignored, "
        "since --target sends to 127.0.0.1:9" in run.stderr
    )
