"""A recording of SMTP traffic as frozen values: sessions, their steps, replies and content.

A recording is what real clients did, at the SMTP level: for each session its
start, the client's address and every step in order. A step is one thing the
client did that the server answers: the wait for the banner, a command line,
the message content after a 354, a line of a SASL exchange; or the TLS
handshake after STARTTLS, which has no reply. Each step holds the replies it
got (one, none when the connection ended first, one per recipient for LMTP's
end of data) and when things happened, in seconds from the session's start.

``docs/recording.md`` describes the file these values are read from and
written to; ``codec.py`` converts between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

StepKind = Literal["banner", "command", "data", "sasl", "tls", "unasked"]
STEP_KINDS: Final[tuple[str, ...]] = ("banner", "command", "data", "sasl", "tls", "unasked")
ContentMode = Literal["full", "hash"]


@dataclass(frozen=True, slots=True)
class RecordedReply:
    """One reply as the client saw it. ``code`` is None for a line that is not SMTP
    (garbage); then ``lines`` holds it as text."""

    code: int | None
    lines: tuple[str, ...]  # each line's text, code and separator removed
    at: float = 0.0  # seconds from the session's start until the reply was complete
    enhanced: str | None = None  # "2.1.5", when the reply carries one

    def without_timing(self) -> RecordedReply:
        return replace(self, at=0.0)


@dataclass(frozen=True, slots=True)
class Content:
    """A message (or one BDAT chunk) as the server receives it: dot-stuffing undone,
    the terminator left out. ``data`` is None when only its size and hash were kept."""

    size: int
    sha256: str
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class RecordedStep:
    """One step of a session.

    ``line`` is the command (or SASL response) exactly as sent, without its line
    end; ``bare_lf`` says it ended with LF alone. ``pipelined`` means the client
    sent it before the reply to the step before it had come (RFC 2920 group).
    ``redacted``: the line carried credentials and was not kept (``line`` is the
    AUTH verb and mechanism only, or None for a SASL response).
    """

    kind: StepKind
    at: float = 0.0  # seconds from the session's start until the client had sent it
    line: bytes | None = None
    bare_lf: bool = False
    pipelined: bool = False
    content: Content | None = None  # after a 354 (kind "data"), or a BDAT chunk
    redacted: bool = False
    replies: tuple[RecordedReply, ...] = ()

    @property
    def verb(self) -> str:
        """The command verb in upper case ("MAIL"), "" for steps without a line."""
        if self.line is None:
            return ""
        return self.line.split(b" ", 1)[0].decode("ascii", "replace").upper()

    @property
    def reply(self) -> RecordedReply | None:
        """The first reply, which is the only one but for LMTP's end of data."""
        return self.replies[0] if self.replies else None

    def without_timing(self) -> RecordedStep:
        return replace(
            self, at=0.0, replies=tuple(reply.without_timing() for reply in self.replies)
        )


@dataclass(frozen=True, slots=True)
class RecordedSession:
    """One connection. ``start`` is seconds from the recording's start; ``duration``
    runs from the connection to its close; ``closed_by`` says who closed it first
    (``client``, ``server``, or ``proxy`` when the recording stopped)."""

    number: int
    start: float
    client: str  # "host:port" of the client
    steps: tuple[RecordedStep, ...]
    duration: float = 0.0
    closed_by: str = "client"

    @property
    def messages(self) -> int:
        """Message contents sent: DATA contents and last BDAT chunks."""
        return sum(1 for step in self.steps if is_message_end(step))

    def without_timing(self) -> RecordedSession:
        """The session with every time set to 0 and who closed first left out: what
        two recordings of the same traffic agree on."""
        return replace(
            self,
            start=0.0,
            duration=0.0,
            closed_by="",
            steps=tuple(step.without_timing() for step in self.steps),
        )


def is_message_end(step: RecordedStep) -> bool:
    """The step that ends a message: content after 354, or ``BDAT n LAST``."""
    if step.kind == "data":
        return True
    return (
        step.kind == "command"
        and step.verb == "BDAT"
        and step.line is not None
        and (step.line.upper().rstrip().endswith(b" LAST"))
    )


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """The first line of a recording file."""

    source: str  # "proxy" or "pcap"
    epoch: float  # Unix time of the recording's start: session starts count from it
    started_at: str  # the same, as ISO 8601 for people
    server: str = ""  # the server recorded (host:port)
    content: ContentMode = "full"  # "hash": only sizes and SHA-256 of message content
    auth: Literal["redacted", "kept"] = "redacted"
    smtpbench: str = ""  # the version that wrote it
    extra: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Recording:
    header: RecordingHeader
    sessions: tuple[RecordedSession, ...]
    path: str = ""  # where it was read from, for messages

    def without_timing(self) -> tuple[RecordedSession, ...]:
        return tuple(session.without_timing() for session in self.sessions)
