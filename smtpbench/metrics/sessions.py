"""Per-session records, one JSON object a line (NDJSON), for people and tools that want
the raw sessions rather than histograms.

``SessionRecord`` is what one session reports to (``SessionEvents``) when
records are asked for: it passes every call on to the run's ``Recorder``
unchanged, notes what this session did, and writes its line to the log when
the session ends (``LoadRun``'s ``events_for`` gives each session one). A line
looks like::

    {"session": 17, "intended": 0.85, "start_lag": 0.0004, "duration": 0.0031,
     "outcome": "failed", "error": "unexpected reply", "error_step": "RCPT",
     "detail": "451 4.3.0 try later", "messages_accepted": 0, "messages_rejected": 1,
     "messages_aborted": 0, "message_latency": [],
     "steps": [["connect", 0.00021, null], ["banner", 0.0005, 220], ...]}

Times are seconds: ``intended`` since the start of the run, the others as
measured (``duration`` from the session's actual start to its end; each step
its service time and reply code, ``null`` where there was none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from smtpbench.metrics.events import SessionEvents, SessionFailure
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.steps import Step

SESSIONS_FILE = "sessions.ndjson"


class SessionRecord(SessionEvents):
    """One session's line: ``SessionEvents`` noted, and passed on to ``events``."""

    __slots__ = ("_events", "_log", "_record")

    def __init__(
        self, events: SessionEvents, log: SessionLog, number: int, intended: float
    ) -> None:
        self._events = events
        self._log = log
        self._record: dict[str, Any] = {
            "session": number,
            "intended": round(intended, 6),
            "start_lag": None,
            "duration": None,
            "outcome": "ok",
            "error": None,
            "error_step": None,
            "detail": None,
            "messages_accepted": 0,
            "messages_rejected": 0,
            "messages_aborted": 0,
            "message_latency": [],
            "steps": [],
        }

    def session_started(self, lag: float) -> None:
        self._events.session_started(lag)
        self._record["start_lag"] = round(lag, 9)

    def sent(self, size: int) -> None:
        self._events.sent(size)

    def timed(self, step: int, seconds: float) -> None:
        self._events.timed(step, seconds)
        self._record["steps"].append([Step(step).label, round(seconds, 9), None])

    def reply(
        self, step: int, code: int, seconds: float | None = None, enhanced: str | None = None
    ) -> None:
        self._events.reply(step, code, seconds, enhanced)
        rounded = round(seconds, 9) if seconds is not None else None
        self._record["steps"].append([Step(step).label, rounded, code])

    def recipient(self, accepted: bool) -> None:
        self._events.recipient(accepted)

    def message(self, accepted: bool, latency: float | None) -> None:
        self._events.message(accepted, latency)
        record = self._record
        record["messages_accepted" if accepted else "messages_rejected"] += 1
        if latency is not None:
            record["message_latency"].append(round(latency, 9))

    def error(self, error: ErrorClass, step: int) -> None:
        self._events.error(error, step)
        record = self._record
        if record["error"] is None:
            record["error"] = error.label
            record["error_step"] = Step(step).label

    def diverged(self, step: int, differs: bool) -> None:
        self._events.diverged(step, differs)

    def session_ended(
        self,
        number: int,
        end: float,
        latency: float,
        aborted: int,
        failure: SessionFailure | None,
    ) -> None:
        self._events.session_ended(number, end, latency, aborted, failure)
        record = self._record
        record["duration"] = round(latency - (record["start_lag"] or 0.0), 9)
        record["messages_aborted"] = aborted
        if failure is not None:
            record["outcome"] = "failed"
            record["error"] = failure.error.label
            record["error_step"] = failure.step.label
            record["detail"] = failure.detail
        self._log.write(record)

    def record(self) -> dict[str, Any]:
        """The session's record; its outcome is ``failed`` when the session failed."""
        return self._record


class SessionLog:
    """Appends records to an NDJSON file as sessions end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()


def read_sessions(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
