"""Per-session records (``run --record-sessions``): each session reports through a
``SessionRecord`` in front of the recorder, whose line is appended to a log as the
session ends."""

from __future__ import annotations

import os
from pathlib import Path

from smtpbench.engine.runner import EventsFor
from smtpbench.metrics.events import SessionEvents
from smtpbench.metrics.sessions import SessionLog, SessionRecord


def partial_log_path(results_base: Path) -> Path:
    """Where records go while the run lasts: beside the results folder that does not
    exist yet; the file moves into it at the end."""
    results_base.mkdir(parents=True, exist_ok=True)
    return results_base / f".sessions-{os.getpid()}.ndjson.partial"


def records_to(log: SessionLog, events: SessionEvents) -> EventsFor:
    """What each session reports to: a record of its own, in front of ``events``."""

    def record(number: int, intended: float) -> SessionEvents:
        return SessionRecord(events, log, number, intended)

    return record
