"""Per-session records, one JSON object a line (NDJSON), for people and tools that want
the raw sessions rather than histograms.

``SessionTap`` stands in for the run's ``Recorder`` while one session runs:
it passes every call and counter change on unchanged, and notes what this
session did. The session runner hands each session a tap instead of the
recorder (``LoadRun``'s ``session_runner``) and writes the tap's record when
the session ends. A line looks like::

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

from smtpbench.metrics.kinds import MESSAGE_LATENCY, SESSION_LATENCY, START_LAG, ErrorClass
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import FailureRecord
from smtpbench.protocol.steps import STEP_COUNT, Step

SESSIONS_FILE = "sessions.ndjson"
_COUNTED = ("messages_accepted", "messages_rejected", "messages_aborted")


class SessionTap:
    """Looks like the recorder to one session; records what that session did."""

    def __init__(self, recorder: Recorder, number: int, intended: float) -> None:
        state = {
            "_recorder": recorder,
            "_record": {
                "session": number,
                "intended": round(intended, 6),
                "start_lag": None,
                "duration": None,
                "outcome": "ok",
                "error": None,
                "error_step": None,
                "detail": None,
                **dict.fromkeys(_COUNTED, 0),
                "message_latency": [],
                "steps": [],
            },
        }
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # Counters and anything else the session reads or bumps go to the recorder.

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _COUNTED:
            self._record[name] += value - getattr(self._recorder, name)
        setattr(self._recorder, name, value)

    # The hot-path calls, passed on and noted.

    def latency(self, row: int, seconds: float) -> None:
        self._recorder.latency(row, seconds)
        record = self._record
        if row < STEP_COUNT:
            record["steps"].append([Step(row).label, round(seconds, 9), None])
        elif row == START_LAG:
            record["start_lag"] = round(seconds, 9)
        elif row == MESSAGE_LATENCY:
            record["message_latency"].append(round(seconds, 9))
        elif row == SESSION_LATENCY:
            lag = record["start_lag"] or 0.0
            record["duration"] = round(seconds - lag, 9)

    def reply(self, step: int, code: int) -> None:
        self._recorder.reply(step, code)
        steps = self._record["steps"]
        label = Step(step).label
        if steps and steps[-1][0] == label and steps[-1][2] is None:
            steps[-1][2] = code
        else:
            steps.append([label, None, code])

    def error(self, error: ErrorClass, step: int) -> None:
        self._recorder.error(error, step)
        record = self._record
        if record["error"] is None:
            record["error"] = error.label
            record["error_step"] = Step(step).label

    def failure(self, failure: FailureRecord) -> None:
        self._recorder.failure(failure)
        record = self._record
        record["outcome"] = "failed"
        record["error"] = failure.error
        record["error_step"] = failure.step
        record["detail"] = failure.detail

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
