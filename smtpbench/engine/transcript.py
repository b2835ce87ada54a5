"""What a session said and heard, kept for the failure record, within a bound.

A session of thousands of messages says tens of thousands of lines; only a failed
session's transcript is ever shown, and only some of it is worth reading. So a
transcript keeps:

- the opening: the first ``OPENING`` lines (banner, greeting, STARTTLS, AUTH, the first
  transaction);
- around the first failure: the ``LAST`` lines up to it;
- the end: the last ``LAST`` lines, up to where the session ended;

and says how many lines it left out between them. Memory stays bounded however long
the session runs, and a failure record stays readable.

The hot path appends ``(sent, reply)`` to ``lines`` directly; ``trim`` is called when
``len(lines)`` passes ``TRIM_AT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from smtpbench.metrics.snapshot import TranscriptLine

if TYPE_CHECKING:
    from smtpbench.protocol.replies import Reply

OPENING: Final = 16
LAST: Final = 32
TRIM_AT: Final = OPENING + 4 * LAST  # lines kept before the list is cut back

Shown = bytes | int | str | None  # a command line, a content size, a redacted line, connect
Line = tuple[Shown, "Reply | None"]


class Transcript:
    __slots__ = ("at_failure", "bounded", "lines", "omitted", "omitted_before_failure", "opening")

    def __init__(self, *, bounded: bool = True) -> None:
        """``bounded=False``: every line is kept (``smtpbench send``: one message, whose
        whole transcript is what the user asked to see)."""
        self.bounded = bounded
        self.lines: list[Line] = []  # since the last cut (or the failure)
        self.opening: list[Line] | None = None  # set at the first cut
        self.omitted = 0  # lines left out between what is kept and ``lines``
        self.at_failure: list[Line] | None = None  # the lines up to the first failure
        self.omitted_before_failure = 0

    def trim(self) -> None:
        """Cuts ``lines`` back to its last ``LAST`` (after setting the opening aside)."""
        if not self.bounded:
            return
        lines = self.lines
        if self.opening is None and self.at_failure is None:
            self.opening, lines = lines[:OPENING], lines[OPENING:]
        cut = len(lines) - LAST
        if cut > 0:
            self.omitted += cut
            lines = lines[cut:]
        self.lines = lines

    def failure_noted(self) -> None:
        """The session's first failure is the last line so far: keep what led to it."""
        if self.at_failure is not None or not self.bounded:
            return
        if self.opening is None and len(self.lines) <= OPENING + LAST:
            self.opening, self.lines = self.lines, []  # short enough to keep whole
            self.at_failure = []
            return
        self.trim()
        self.at_failure, self.lines = self.lines, []
        self.omitted_before_failure, self.omitted = self.omitted, 0

    def rendered(self) -> tuple[TranscriptLine, ...]:
        if len(self.lines) > LAST and (self.opening is not None or self.at_failure is not None):
            self.trim()
        out = [_line(sent, reply) for sent, reply in self.opening or ()]
        if self.at_failure is not None:
            _left_out(out, self.omitted_before_failure)
            out += [_line(sent, reply) for sent, reply in self.at_failure]
        _left_out(out, self.omitted)
        out += [_line(sent, reply) for sent, reply in self.lines]
        return tuple(out)


def _left_out(out: list[TranscriptLine], count: int) -> None:
    if count:
        out.append(TranscriptLine.left_out(count))


def _line(sent: Shown, reply: Reply | None) -> TranscriptLine:
    if isinstance(sent, bytes):
        text = sent.decode("utf-8", "replace").rstrip("\r\n")
    elif isinstance(sent, str):
        text = sent
    elif isinstance(sent, int):
        text = f"(message content, {sent} bytes)"
    else:
        text = "(connect)"
    return TranscriptLine(text, str(reply) if reply is not None else "")


__all__ = ["LAST", "OPENING", "TRIM_AT", "Transcript"]
