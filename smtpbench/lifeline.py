"""Child processes that do not outlive the process that started them.

A run's worker processes ask Linux for a signal when their parent dies
(``prctl(PR_SET_PDEATHSIG)``), so a run killed with SIGKILL leaves no engine
sending mail behind it. The kernel sends it when the *thread* that started the
child ends, so this suits children started from the main thread only; the
embedded sink, started from a helper thread, watches a pipe from its parent
instead (``smtpbench sink --exit-with-stdin``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """Asks for ``signum`` when the parent dies, and ends now if process ``parent`` is
    already gone (it died before the request). Outside Linux, only the check is made."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl here: the pipe to the parent still ends the child, later
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
