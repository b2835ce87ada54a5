"""`run` with its dashboard on a terminal that goes away (the window is closed, the ssh
session drops): the kernel sends SIGHUP, the run stops as with q, and the results are
written; the embedded sink and the engine process end with it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import RunState
from tests.commands import ENV, ROOT, children_of, wait_gone

TIMEOUT = 30


def test_a_closed_terminal_stops_the_run_and_keeps_its_results(tmp_path: Path) -> None:
    master, terminal = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)

    run = subprocess.Popen(
        [sys.executable, "-m", "smtpbench", "run", "--rate", "20", "--duration", "60s",
         "--out", str(tmp_path)],
        stdin=terminal, stdout=terminal, stderr=terminal, preexec_fn=own_terminal, cwd=ROOT,
        env={**ENV, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
    )  # fmt: skip
    os.close(terminal)
    try:
        drawn = 0
        deadline = time.monotonic() + TIMEOUT
        children: list[int] = []
        while time.monotonic() < deadline and (drawn < 100_000 or len(children) < 2):
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                drawn += len(os.read(master, 65536))  # the dashboard, drawing
            children = children_of(run.pid)
        assert len(children) >= 2, "no sink and engine process under run"
        time.sleep(1.0)  # sessions under way
        os.close(master)  # the terminal goes away: SIGHUP
        assert run.wait(TIMEOUT) == exitcodes.INTERRUPTED
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(TIMEOUT)
    for child in children:
        assert wait_gone(child)
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    snapshot = read_results(folder)
    assert snapshot.state is RunState.INTERRUPTED and snapshot.counters.started > 0
