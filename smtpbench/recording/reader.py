"""Reading a recording file: the header line, then one session a line.

Every problem is a ``RecordingError`` naming the file and the line, and the
field when one is wrong:

    traffic.jsonl:7: steps[2].replies[0].code: expected a reply code (200-599) or null, got 'x'
    traffic.jsonl:12: truncated: the last line ends in the middle of a session
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from smtpbench.recording.codec import FieldError, decode_header, decode_session
from smtpbench.recording.model import RecordedSession, Recording, RecordingHeader


class RecordingError(Exception):
    """A recording that cannot be read: ``path:line: what is wrong``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(number, text, ended with a newline) for each line of the file."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            yield number, raw, raw.endswith(b"\n")


def _parse(path: str, number: int, raw: bytes, complete: bool) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordingError(path, number, f"not UTF-8 (byte {err.start + 1})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordingError(path, number, "not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as err:
        if not complete:
            raise RecordingError(
                path,
                number,
                "truncated: the last line ends in the middle of a session "
                "(was the recording cut short?)",
            ) from None
        raise RecordingError(
            path, number, f"not valid JSON: {err.msg} (column {err.colno})"
        ) from None


def read_header(path: str | Path) -> RecordingHeader:
    """Only the first line: enough to tell what a file is."""
    file = Path(path)
    try:
        for number, raw, complete in _lines(file):
            return _header(str(path), number, raw, complete)
    except OSError as err:
        raise RecordingError(str(path), None, f"cannot read: {err.strerror or err}") from None
    raise RecordingError(str(path), None, "empty: a recording starts with its header line")


def _header(path: str, number: int, raw: bytes, complete: bool) -> RecordingHeader:
    try:
        return decode_header(_parse(path, number, raw, complete))
    except FieldError as err:
        raise RecordingError(path, number, f"header: {err}") from None


def iter_sessions(path: str | Path) -> Iterator[tuple[int, RecordedSession]]:
    """(line number, session) in file order, after checking the header."""
    name = str(path)
    file = Path(path)
    seen_header = False
    numbers: dict[int, int] = {}
    try:
        for number, raw, complete in _lines(file):
            if not seen_header:
                _header(name, number, raw, complete)
                seen_header = True
                continue
            if not raw.strip():
                continue
            obj = _parse(name, number, raw, complete)
            try:
                session = decode_session(obj)
            except FieldError as err:
                which = obj.get("session") if isinstance(obj, dict) else None
                prefix = f"session {which}: " if isinstance(which, int) else ""
                raise RecordingError(name, number, f"{prefix}{err}") from None
            if session.number in numbers:
                raise RecordingError(
                    name,
                    number,
                    f"session {session.number} appears twice (first on line "
                    f"{numbers[session.number]})",
                )
            numbers[session.number] = number
            yield number, session
    except OSError as err:
        raise RecordingError(name, None, f"cannot read: {err.strerror or err}") from None
    if not seen_header:
        raise RecordingError(name, None, "empty: a recording starts with its header line")


def read_recording(path: str | Path) -> Recording:
    """The whole recording, sessions in order of their start (files written as sessions
    end list them in that order instead)."""
    header = read_header(path)
    sessions = [session for _, session in iter_sessions(path)]
    sessions.sort(key=lambda s: (s.start, s.number))
    return Recording(header, tuple(sessions), str(path))
