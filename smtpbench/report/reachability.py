"""Whether the run reached its target at all, and whether anything succeeded: a run that
never connected, or where every session failed, must not read as a pass."""

from __future__ import annotations

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step

EARLY_FAILURES = 3  # failed connects, none successful, before the run is called unusable

KEEP_GOING_HINT = "--keep-going runs on anyway"


def never_connected(snapshot: Snapshot) -> bool:
    """Sessions tried to connect, and not one connection was ever opened."""
    return snapshot.latency_count(Step.CONNECT) == 0 and snapshot.step_errors(Step.CONNECT) > 0


def unreachable(snapshot: Snapshot, least: int = EARLY_FAILURES) -> str | None:
    """A plain sentence once ``least`` connects failed and none succeeded: "nothing is
    listening on 127.0.0.1:1 (3 connections refused)"."""
    failures = snapshot.step_errors(Step.CONNECT)
    if failures < least or not never_connected(snapshot):
        return None
    target = snapshot.info.target
    refused = int(snapshot.errors[ErrorClass.REFUSED, Step.CONNECT])
    if refused == failures:
        return f"nothing is listening on {target} ({failures:,} connections refused)"
    why = ", ".join(
        f"{int(n):,} {ErrorClass(e).label}"
        for e, n in enumerate(snapshot.errors[:, Step.CONNECT])
        if n and e != ErrorClass.CANCELLED
    )
    return f"no connection to {target} could be opened ({why})"


def every_session_failed(snapshot: Snapshot) -> bool:
    """Sessions ended on their own and not one of them succeeded."""
    completed = snapshot.server_completed
    return completed > 0 and snapshot.server_failed >= completed
