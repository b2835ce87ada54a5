"""The compiled build (mypyc, ``SMTPBENCH_COMPILE=1``) and the sources it is made from.

The suite runs on whatever is installed: the sources in CI, the compiled modules after
``SMTPBENCH_COMPILE=1 pip install -e .``. Here: the compiled modules pass the type check
mypyc makes before it compiles anything, the build is whole or absent, says what it is,
runs its sources when asked (``SMTPBENCH_INTERPRETED=1``), and a compiled module older
than its source is found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smtpbench import build_info

ROOT = Path(__file__).resolve().parent.parent


def test_the_compiled_modules_type_check_as_the_build_asks() -> None:
    # mypyc compiles nothing that mypy does not pass, with the options setup.py gives it:
    # the same check, made here on the sources in seconds, so that a hint a change makes
    # untrue shows in CI (which tests the sources) and not only when someone compiles.
    from mypy import api

    files = [
        str(ROOT / "smtpbench" / (module.split(".", 1)[1].replace(".", "/") + ".py"))
        for module in build_info.COMPILED_MODULES
    ]
    stdout, stderr, status = api.run([*files, "--follow-imports=silent", "--no-incremental"])
    assert status == 0, stdout + stderr
    assert f"no issues found in {len(files)} source files" in stdout


def interpreted_env() -> dict[str, str]:
    return {**os.environ, build_info.INTERPRETED_VARIABLE: "1"}


def test_a_build_is_compiled_whole_or_not_at_all() -> None:
    done = build_info.compiled()
    assert done in ([], list(build_info.COMPILED_MODULES))
    expected = "compiled with mypyc" if done else "interpreted"
    assert build_info.engine_build() == expected


def test_version_says_how_the_engine_runs() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "smtpbench", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert shown == f"smtpbench 0.1.0 (engine {build_info.engine_build()})\n"


def test_the_sources_run_when_asked_even_in_a_compiled_build() -> None:
    probe = (
        "import smtpbench.engine.session as s, smtpbench.build_info as b;"
        "print(s.__file__); print(b.engine_build())"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=interpreted_env(),
    ).stdout.splitlines()
    assert shown[0].endswith(os.path.join("engine", "session.py"))
    assert shown[1] == "interpreted"


def test_a_compiled_module_older_than_its_source_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = tmp_path / "session.cpython-311-x86_64-linux-gnu.so"
    source = tmp_path / "session.py"
    compiled.write_bytes(b"")
    source.write_text("")
    monkeypatch.setattr(build_info, "compiled", lambda: ["smtpbench.engine.session"])
    monkeypatch.setattr(build_info, "_origin", lambda name: str(compiled))
    os.utime(compiled, (1000, 1000))
    os.utime(source, (2000, 2000))  # edited after the build
    assert build_info.stale() == [str(source)]
    os.utime(compiled, (3000, 3000))  # built again
    assert build_info.stale() == []


def test_a_run_on_the_sources_sends_mail(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smtpbench",
            "run",
            "--headless",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=interpreted_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = out.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counters"]["messages_accepted"] == 50
