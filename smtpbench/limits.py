"""What a run asks of this machine, checked before it starts: open files for the
sessions it keeps in flight, cores and memory for its worker processes.

A run that asks more than the machine has does not fail loudly on its own: a
million sessions in flight wait for descriptors that never come, a thousand
workers take turns on two cores until memory runs out. ``check_run`` says so
before the first session, with how to raise a limit where one can be raised;
``--ignore-limits`` runs it anyway.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from dataclasses import dataclass

from smtpbench.scenario import Load

# Descriptors a process needs besides its sessions: the interpreter, logs, pipes to
# workers, the listener of an embedded sink.
RESERVED_FILES = 64
WORKER_MEMORY = 64 * 1024 * 1024  # bytes a worker process takes before any session
SESSION_MEMORY = 16 * 1024  # bytes a session in flight takes, buffers and state


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    open_files: tuple[int, int]  # soft and hard RLIMIT_NOFILE (RLIM_INFINITY: none)
    memory_available: int | None  # bytes, None where it cannot be told


def this_machine() -> Machine:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return Machine(cores, resource.getrlimit(resource.RLIMIT_NOFILE), _memory_available())


def _memory_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def open_files_needed(load: Load, workers: int, embedded_sink: bool) -> int:
    """Descriptors the busiest process of the run needs: a worker's share of the sessions
    kept in flight, or the embedded sink, which serves them all."""
    if load.mode != "concurrency":
        return RESERVED_FILES  # the cap is a ceiling: sessions past it wait or drop
    share = math.ceil(load.concurrency / workers)
    return max(share, load.concurrency if embedded_sink else 0) + RESERVED_FILES


def _mib(size: float) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


def check_run(load: Load, workers: int, embedded_sink: bool, machine: Machine) -> list[str]:
    """What the run asks that ``machine`` does not have, one sentence each; empty when it
    fits. A soft open files limit below the hard one is not a problem: ``raise_open_files``
    lifts it."""
    problems = []
    needed = open_files_needed(load, workers, embedded_sink)
    hard = machine.open_files[1]
    if hard != resource.RLIM_INFINITY and needed > hard:
        problems.append(
            f"--concurrency {load.concurrency:,} needs about {needed:,} open files in one "
            f"process, and this one may open {hard:,} at most; raise the limit (ulimit -Hn, "
            "LimitNOFILE= for a systemd service, nofile in /etc/security/limits.conf) or ask "
            "for fewer sessions in flight"
        )
    if workers > machine.cores:
        problems.append(
            f"--workers {workers:,}: this machine has {machine.cores} cores; workers beyond "
            "one a core take turns on them and start fewer sessions on time, not more"
        )
    memory = workers * WORKER_MEMORY
    if load.mode == "concurrency":
        memory += load.concurrency * SESSION_MEMORY
    if machine.memory_available is not None and memory > machine.memory_available:
        asked = f"{workers:,} worker processes"
        if load.mode == "concurrency":
            asked += f" and {load.concurrency:,} sessions in flight"
        problems.append(
            f"{asked} need about {_mib(memory)} of memory; {_mib(machine.memory_available)} is free"
        )
    return problems


def raise_open_files(needed: int) -> None:
    """Lifts this process's soft open files limit to ``needed`` (or the hard limit, if
    lower); processes started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    # Where it cannot be lifted the check has said what it could; sessions meet the limit.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
