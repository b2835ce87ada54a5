"""Writing a recording: the header line first, then each session as it ends, flushed at
once so that a recording cut short (a crash, a kill) loses at most the line being written."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import IO, Any

from smtpbench.files import OutputError, temporary_name
from smtpbench.recording.codec import encode_header, encode_session
from smtpbench.recording.model import RecordedSession, Recording, RecordingHeader


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


class RecordingWriter:
    """Appends sessions to a new recording file."""

    def __init__(self, path: str | Path, header: RecordingHeader) -> None:
        self.path = Path(path)
        self.sessions = 0
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._file.write(_line(encode_header(header)))
        self._file.flush()

    def write(self, session: RecordedSession) -> None:
        self._file.write(_line(encode_session(session)))
        self._file.flush()
        self.sessions += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_recording(path: str | Path, recording: Recording) -> None:
    """A whole recording at once (an import): written under a temporary name and renamed,
    so ``path`` holds the whole of it or what it held before (``OutputError``)."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        with RecordingWriter(temporary, recording.header) as writer:
            for session in recording.sessions:
                writer.write(session)
        temporary.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise OutputError(f"{path}: could not be written: {err.strerror or err}") from None
