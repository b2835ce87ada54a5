"""What a session tells the metrics: the one narrow seam between the engine and them.

The session machine reports each thing that happened through these calls and
nothing else: it never reads or sets a counter. ``Recorder`` implements them
for the whole run (appends to flat buffers, bumps ints); ``SessionRecord``
(``sessions.py``) implements them for one session's line in
``sessions.ndjson`` and passes each call on to the recorder.

Times are seconds. ``lag`` and ``latency`` are measured from the session's
intended start (what a sender feels); ``seconds`` of a step is its service time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.snapshot import TranscriptLine
from smtpbench.protocol.steps import Step


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """Why a session failed: the first error, where, in words, and what was said."""

    error: ErrorClass
    step: Step
    detail: str
    transcript: tuple[TranscriptLine, ...]


class SessionEvents(Protocol):
    def session_started(self, lag: float) -> None:
        """The session began (``lag``: how late against its intended start)."""

    def sent(self, size: int) -> None:
        """``size`` bytes were handed to the connection."""

    def timed(self, step: Step, seconds: float) -> None:
        """A step with no reply of its own took ``seconds``: connect, TLS handshake."""

    def reply(self, step: Step, code: int, seconds: float, enhanced: str | None = None) -> None:
        """The reply to ``step`` came with ``code`` (and the enhanced status code
        ``enhanced``, "4.7.1", when the server gave one) after ``seconds`` of service
        time."""

    def recipient(self, accepted: bool) -> None:
        """A recipient was accepted or refused."""

    def message(self, accepted: bool, latency: float | None) -> None:
        """A message ended accepted or refused; ``latency`` from intended start to its
        final reply, None when it was refused before its content went out."""

    def error(self, error: ErrorClass, step: Step) -> None:
        """Something went wrong at ``step`` (a reply not counted as success, a timeout,
        a broken connection...); a session may count several."""

    def diverged(self, step: Step, differs: bool) -> None:
        """A replayed reply was compared with the recorded one."""

    def session_ended(
        self,
        number: int,
        end: float,
        latency: float,
        aborted: int,
        failure: SessionFailure | None,
    ) -> None:
        """The session is over at ``end`` (the engine's clock), ``latency`` after its
        intended start; ``aborted`` messages were begun and never ended."""


__all__ = ["SessionEvents", "SessionFailure"]
