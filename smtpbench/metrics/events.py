"""What a session tells the metrics: the one narrow seam between the engine and them.

The session machine reports each thing that happened through these calls and
nothing else: it never reads or sets a counter. ``Recorder`` implements them
for the whole run (appends to flat buffers, bumps ints); ``SessionRecord``
(``sessions.py``) implements them for one session's line in
``sessions.ndjson`` and passes each call on to the recorder.

``SessionEvents`` is a class each of them subclasses, not a protocol: in a
compiled build a session's call to the recorder (several every message) is
then a direct C call, where a protocol's would look the method up by name and
box its arguments. Classes left interpreted subclass it all the same.

Times are seconds. ``lag`` and ``latency`` are measured from the session's
intended start (what a sender feels); ``seconds`` of a step is its service time.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpbench.build_info import mypyc_attr
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


@mypyc_attr(allow_interpreted_subclasses=True)
class SessionEvents:
    """What a session reports to; every method is one of its subclasses' to say.
    ``step`` is a ``Step`` (an int)."""

    def session_started(self, lag: float) -> None:
        """The session began (``lag``: how late against its intended start)."""
        raise NotImplementedError

    def sent(self, size: int) -> None:
        """``size`` bytes were handed to the connection."""
        raise NotImplementedError

    def timed(self, step: int, seconds: float) -> None:
        """A step with no reply of its own took ``seconds``: connect, TLS handshake."""
        raise NotImplementedError

    def reply(
        self, step: int, code: int, seconds: float | None = None, enhanced: str | None = None
    ) -> None:
        """The reply to ``step`` came with ``code`` (and the enhanced status code
        ``enhanced``, "4.7.1", when the server gave one) after ``seconds`` of service
        time (None: a code with no time, from a stand-in that makes up figures)."""
        raise NotImplementedError

    def recipient(self, accepted: bool) -> None:
        """A recipient was accepted or refused."""
        raise NotImplementedError

    def message(self, accepted: bool, latency: float | None) -> None:
        """A message ended accepted or refused; ``latency`` from intended start to its
        final reply, None when it was refused before its content went out."""
        raise NotImplementedError

    def error(self, error: ErrorClass, step: int) -> None:
        """Something went wrong at ``step`` (a reply not counted as success, a timeout,
        a broken connection...); a session may count several."""
        raise NotImplementedError

    def diverged(self, step: int, differs: bool) -> None:
        """A replayed reply was compared with the recorded one."""
        raise NotImplementedError

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
        raise NotImplementedError


__all__ = ["SessionEvents", "SessionFailure"]
