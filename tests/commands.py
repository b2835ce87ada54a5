"""Running the smtpbench command in a child process, as a user does (no terminal)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(ROOT)}
TRACEBACK = "Traceback (most recent call last)"


def smtpbench(
    *args: str, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )


def start_smtpbench(*args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """The command started in a session of its own, output piped; the caller ends it."""
    return subprocess.Popen(
        [sys.executable, "-m", "smtpbench", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ENV,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float = 30) -> str:
    """stdout up to and including the first line matching ``pattern``."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    wanted = re.compile(pattern)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if not ready:
            if process.poll() is not None:
                break
            continue
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if wanted.search(line):
            return seen
    raise AssertionError(f"{pattern!r} not printed in {timeout}s; printed:\n{seen}")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(word) for word in children.read().split()]
        except OSError:
            continue
    return found
