"""No secret in anything a run writes: a known password, given in the environment or in
the scenario file, is looked for (as is and base64-encoded) in every file of the results
folder and in the command's output, for runs whose AUTH succeeds and fails."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest
import trio

from smtpbench.engine.embedded import embedded_sink

USER = "alice"
PASSWORD = "Zebra-Cactus-7391!"
LIMIT = 60


def secret_forms(password: str) -> list[bytes]:
    """The password as it could leak: plain, and as LOGIN and PLAIN put it on the wire."""
    raw = password.encode()
    plain = b"\x00" + USER.encode() + b"\x00" + raw
    return [raw, base64.b64encode(raw), base64.b64encode(plain)]


def scenario_file(folder: Path, port: int, mechanism: str, *, literal: bool) -> Path:
    secret = f'password = "{PASSWORD}"' if literal else 'password_env = "SMTPBENCH_TEST_SECRET"'
    path = folder / f"auth-{mechanism.lower()}-{'file' if literal else 'env'}.toml"
    path.write_text(
        f"""
[target]
host = "127.0.0.1"
port = {port}

[load]
rate = "20/s"
duration = "1s"

[auth]
mechanism = "{mechanism}"
username = "{USER}"
{secret}
"""
    )
    return path


async def smtpbench_run(scenario: Path, out: Path, password: str | None) -> tuple[int, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SMTPBENCH_TEST_SECRET"}
    if password is not None:
        env["SMTPBENCH_TEST_SECRET"] = password
    command = [
        sys.executable,
        "-m",
        "smtpbench",
        "run",
        str(scenario),
        "--headless",
        "--record-sessions",
        "--out",
        str(out),
    ]
    with trio.fail_after(LIMIT):
        done = await trio.run_process(
            command, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_no_secret_in_anything_a_run_writes(tmp_path: Path, mechanism: str) -> None:
    out = tmp_path / "results"
    outputs = []
    # The sink takes another password: every AUTH fails, every session has a transcript.
    async with embedded_sink(["--user", f"{USER}:{PASSWORD}-not"]) as (_, port):
        for literal in (False, True):
            scenario = scenario_file(tmp_path, port, mechanism, literal=literal)
            code, output = await smtpbench_run(scenario, out, None if literal else PASSWORD)
            # Every AUTH refused: every session failed, which a run does not pass.
            assert code == 1, output.decode(errors="replace")
            assert b"every session failed" in output
            outputs.append(output)
    async with embedded_sink(["--user", f"{USER}:{PASSWORD}"]) as (_, port):
        scenario = scenario_file(tmp_path, port, mechanism, literal=False)
        code, output = await smtpbench_run(scenario, out, PASSWORD)
        assert code == 0
        outputs.append(output)

    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert len(folders) == 3
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "scenario.toml" for path in written)
    assert any(path.name == "summary.json" for path in written)
    failed_summary = (folders[0] / "summary.json").read_text()
    assert f"AUTH {mechanism} (credentials hidden)" in failed_summary  # the transcripts
    assert "535" in failed_summary
    for form in secret_forms(PASSWORD):
        for path in written:
            assert form not in path.read_bytes(), f"{form!r} in {path}"
        for output in outputs:
            assert form not in output


async def test_missing_password_is_a_clear_error_before_anything_runs(tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, 2525, "PLAIN", literal=False)
    code, output = await smtpbench_run(scenario, tmp_path / "results", None)
    assert code == 2
    assert b"SMTPBENCH_TEST_SECRET" in output
    assert not (tmp_path / "results").exists()
