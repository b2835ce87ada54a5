"""Following one SMTP conversation from the bytes each side sent, as a recording session.

Both the recording proxy and the capture importer feed a ``Conversation`` the
same way: each piece of data as it was read, with its time and direction. The
conversation pairs replies with the steps they answer, in order (RFC 5321 and
RFC 2920: replies come in the order of the commands), and so knows at any point
how the next client bytes read:

- command lines, up to LF (CRLF or a bare LF);
- after DATA, nothing until its reply: a 354 starts the message content, which
  ends with CRLF "." CRLF; dot-stuffing is undone as a server does;
- after ``BDAT n``, exactly n octets of chunk, whatever the reply;
- after AUTH or a SASL line, nothing until the reply: a 334 makes the next line a
  SASL response;
- after STARTTLS, nothing until the reply: a 220 means TLS follows, which only a
  party holding the keys can go on reading (``tls_started``).

A command is *pipelined* when the step before it still had a reply coming when
it was sent. Nothing here reads a clock or raises on bad input: a client or a
server that misbehaves is recorded as it misbehaved (a reply line that is not
SMTP is a reply with no code), and every buffer is bounded.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from smtpbench.protocol.replies import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_LINES
from smtpbench.recording.model import (
    Content,
    RecordedReply,
    RecordedSession,
    RecordedStep,
    StepKind,
)

MAX_LINE: Final = 65536  # a command line longer than this is cut there
# A reply past these limits (the client's own, protocol/replies.py) is a protocol error:
# the conversation stops reading the server (``protocol_error``), so memory stays bounded.
MAX_REPLY_LINE: Final = DEFAULT_MAX_LINE_LENGTH
MAX_REPLY_LINES: Final = DEFAULT_MAX_LINES
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|$)")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_BDAT = re.compile(rb"^BDAT\s+([0-9]{1,18})(\s+LAST)?\s*$", re.IGNORECASE)
_TERMINATOR: Final = b"\r\n.\r\n"


def _verb(line: bytes) -> bytes:
    """A command line's verb as a server reads it: the first word, split on any white
    space (a tab too: ``AUTH<TAB>PLAIN<TAB>...`` is AUTH to Postfix), upper case."""
    words = line.split(None, 1)
    return words[0].upper() if words else b""


@dataclass
class _Step:
    kind: StepKind
    at: float
    line: bytes | None = None
    bare_lf: bool = False
    pipelined: bool = False
    content: Content | None = None
    redacted: bool = False
    replies: list[RecordedReply] = field(default_factory=list)
    owed: int = 1  # replies this step is owed

    @property
    def verb(self) -> str:
        if self.kind != "command" or self.line is None:
            return ""
        return _verb(self.line).decode("ascii", "replace")

    def freeze(self) -> RecordedStep:
        return RecordedStep(
            kind=self.kind,
            at=max(0.0, self.at),
            line=self.line,
            bare_lf=self.bare_lf,
            pipelined=self.pipelined,
            content=self.content,
            redacted=self.redacted,
            replies=tuple(self.replies),
        )


class _ContentReader:
    """Message content after a 354, up to CRLF "." CRLF, with dot-stuffing undone.

    The buffer starts with a CRLF put there at the 354, so the first line's
    leading dot and the terminator look like every other line's. Bytes move out
    up to the last CRLF seen, so no "CRLF ." is ever cut in two; inside a very
    long line, up to its last 4 bytes (no CRLF is in there to cut).
    """

    def __init__(self, keep: bool) -> None:
        self.buf = bytearray(b"\r\n")
        self.parts: list[bytes] | None = [] if keep else None
        self.digest = hashlib.sha256()
        self.size = 0
        self._first = True

    def _out(self, stuffed: bytes) -> None:
        data = stuffed.replace(b"\r\n.", b"\r\n")
        if self._first:
            data = data[2:]  # the CRLF put in front
            self._first = False
        self.digest.update(data)
        self.size += len(data)
        if self.parts is not None:
            self.parts.append(data)

    def feed(self, data: bytes) -> int | None:
        """Takes ``data``; once the terminator came, how many of its bytes follow it."""
        buf = self.buf
        buf += data
        end = buf.find(_TERMINATOR)
        if end >= 0:
            self._out(bytes(buf[: end + 2]))  # the CRLF ending the last line is content
            rest = len(buf) - (end + len(_TERMINATOR))
            del buf[:]
            return rest
        cut = buf.rfind(b"\r\n")
        if cut > 0:
            self._out(bytes(buf[:cut]))
            del buf[:cut]
        elif len(buf) > MAX_LINE:
            self._out(bytes(buf[:-4]))
            del buf[:-4]
        return None

    def finish(self) -> Content:
        data = b"".join(self.parts) if self.parts is not None else None
        return Content(self.size, self.digest.hexdigest(), data)


class Conversation:
    """One connection's conversation; ``finish`` gives the recorded session.

    ``keep_content`` keeps message bytes (else only their size and SHA-256);
    ``redact_auth`` keeps AUTH credentials and SASL responses out of the record.
    """

    def __init__(
        self,
        number: int,
        start: float,
        client: str,
        *,
        keep_content: bool = True,
        redact_auth: bool = True,
    ) -> None:
        self.number = number
        self.start = start
        self.client = client
        self.keep_content = keep_content
        self.redact_auth = redact_auth
        self.closed_by = ""
        self.encrypted = False  # TLS began and this side cannot read it
        self.protocol_error: str | None = None  # the server broke the reply limits
        self._steps: list[_Step] = [_Step("banner", 0.0)]
        self._awaiting: deque[_Step] = deque(self._steps)
        # client side
        self._cbuf = bytearray()
        self._mode = "command"  # command, wait, content, chunk, tls
        self._waiting_on: _Step | None = None
        self._sasl_next = False
        self._discarding = False
        self._content: _ContentReader | None = None
        self._chunk: _Step | None = None
        self._chunk_left = 0
        self._chunk_parts: list[bytes] = []
        self._chunk_digest = hashlib.sha256()
        self._chunk_size = 0
        self._lmtp = False
        self._recipients = 0
        self._last_time = start
        # server side
        self._sbuf = bytearray()
        self._reply_code: int | None = None
        self._reply_lines: list[str] = []
        self._starttls: tuple[int, int] | None = None
        self._client_offset = 0  # stream offset of the first byte in _cbuf

    # -- what the proxy needs to know ---------------------------------------------

    @property
    def outstanding(self) -> int:
        """Steps still owed a reply."""
        return len(self._awaiting)

    @property
    def awaiting_starttls(self) -> bool:
        """STARTTLS was sent and its reply has not come (or was 220 and TLS is due)."""
        waiting = self._waiting_on
        return (self._mode == "wait" and waiting is not None and waiting.verb == "STARTTLS") or (
            self._mode == "tls"
        )

    @property
    def tls_due(self) -> bool:
        """The server said 220 to STARTTLS: both sides start TLS now."""
        return self._mode == "tls" and not self.encrypted

    @property
    def answering_hello(self) -> bool:
        """The next reply to come answers EHLO or LHLO."""
        return bool(self._awaiting) and self._awaiting[0].verb in ("EHLO", "LHLO")

    @property
    def partial_line(self) -> bytes:
        """Client bytes of a command line that has not ended yet."""
        if self._mode != "command" or self._discarding:
            return b""
        return bytes(self._cbuf)

    def take_starttls_span(self) -> tuple[int, int] | None:
        """Where in the client's byte stream the last STARTTLS line was (start, end),
        once; None when no STARTTLS line was read since the last call."""
        span, self._starttls = self._starttls, None
        return span

    # -- input ------------------------------------------------------------------

    def client_data(self, at: float, data: bytes) -> None:
        self._last_time = max(self._last_time, at)
        if self._mode == "tls" or not data:
            return
        self._cbuf += data
        self._parse_client(at)

    def server_data(self, at: float, data: bytes) -> None:
        self._last_time = max(self._last_time, at)
        if self.encrypted or self.protocol_error or not data:
            return
        self._sbuf += data
        buf = self._sbuf
        while not self.protocol_error:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_REPLY_LINE:
                    self.give_up(f"reply line longer than {MAX_REPLY_LINE} bytes")
                return
            if end > MAX_REPLY_LINE:
                self.give_up(f"reply line longer than {MAX_REPLY_LINE} bytes")
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            self._reply_line(at, line[:-1] if line.endswith(b"\r") else line)
            if self._mode == "tls":
                del buf[:]  # anything after the 220 is TLS, or nothing
                return

    def give_up(self, why: str) -> None:
        """The server broke the reply limits: stop reading it; the session ends."""
        self.protocol_error = why
        del self._sbuf[:]

    def tls_started(self, at: float) -> None:
        """Both sides finished the TLS handshake after STARTTLS: the session starts over,
        and what was sent in clear text after STARTTLS is dropped (RFC 3207)."""
        self._steps.append(_Step("tls", at - self.start, owed=0))
        self._mode = "command"
        self._waiting_on = None
        self._sasl_next = False
        self._client_offset += len(self._cbuf)
        del self._cbuf[:]
        del self._sbuf[:]
        self._reply_code = None
        self._reply_lines = []

    def tls_unreadable(self) -> None:
        """TLS began and the rest cannot be read (a capture without the keys)."""
        self.encrypted = True

    def client_closed(self, at: float) -> None:
        self._last_time = max(self._last_time, at)
        if not self.closed_by:
            self.closed_by = "client"

    def server_closed(self, at: float) -> None:
        self._last_time = max(self._last_time, at)
        if not self.closed_by:
            self.closed_by = "server"

    def finish(self, at: float | None = None, epoch: float = 0.0) -> RecordedSession:
        """The recorded session; ``epoch`` is the recording's start (session starts count
        from it). A reply or command left unfinished at the close is not recorded."""
        end = self._last_time if at is None else max(at, self._last_time)
        if self._reply_lines:
            self._close_reply(end)
        steps = tuple(step.freeze() for step in self._steps)
        return RecordedSession(
            number=self.number,
            start=max(0.0, self.start - epoch),
            client=self.client,
            steps=steps,
            duration=max(0.0, end - self.start),
            closed_by=self.closed_by or "proxy",
        )

    # -- the client's bytes -------------------------------------------------------

    def _parse_client(self, at: float) -> None:
        while self._cbuf:
            mode = self._mode
            if mode == "command":
                if not self._read_line(at):
                    return
            elif mode == "content":
                if not self._read_content(at):
                    return
            elif mode == "chunk":
                if not self._read_chunk(at):
                    return
            else:  # wait, tls
                return

    def _consume(self, count: int) -> None:
        del self._cbuf[:count]
        self._client_offset += count

    def _read_line(self, at: float) -> bool:
        buf = self._cbuf
        end = buf.find(b"\n", 0, MAX_LINE + 1)
        if end < 0:
            if len(buf) <= MAX_LINE:
                return False
            if not self._discarding:  # record what fits, drop the rest of the line
                self._line(at, bytes(buf[:MAX_LINE]), bare_lf=False, start=self._client_offset)
            end = buf.find(b"\n", MAX_LINE)
            self._discarding = end < 0
            self._consume(len(buf) if end < 0 else end + 1)
            return True
        start = self._client_offset
        raw = bytes(buf[:end])
        self._consume(end + 1)
        if self._discarding:
            self._discarding = False
            return True
        crlf = raw.endswith(b"\r")
        self._line(at, raw[:-1] if crlf else raw, bare_lf=not crlf, start=start)
        return True

    def _line(self, at: float, line: bytes, *, bare_lf: bool, start: int) -> None:
        pipelined = bool(self._awaiting)
        if self._sasl_next:
            self._sasl_next = False
            redact = self.redact_auth and line not in (b"", b"*")
            step = _Step(
                "sasl",
                at - self.start,
                None if redact else line,
                bare_lf,
                pipelined,
                redacted=redact,
            )
            self._add(step)
            self._wait(step)
            return
        verb = _verb(line)
        step = _Step("command", at - self.start, line, bare_lf, pipelined)
        if verb == b"AUTH":
            # Whatever follows the mechanism is an initial response, however it is spaced.
            words = line.split()
            if self.redact_auth and len(words) > 2:
                step.line = b" ".join(words[:2])
                step.redacted = True
            self._add(step)
            self._wait(step)
            return
        if verb == b"LHLO":
            self._lmtp = True
        self._add(step)
        if verb == b"DATA":
            self._wait(step)
        elif verb == b"STARTTLS":
            self._starttls = (start, self._client_offset)
            self._wait(step)
        elif verb == b"BDAT":
            match = _BDAT.match(line)
            if match is not None:
                self._chunk = step
                self._chunk_left = int(match.group(1))
                self._chunk_parts = []
                self._chunk_digest = hashlib.sha256()
                self._chunk_size = 0
                self._mode = "chunk"
                if match.group(2) and self._lmtp:
                    step.owed = max(1, self._recipients)

    def _add(self, step: _Step) -> None:
        self._steps.append(step)
        if step.owed:
            self._awaiting.append(step)

    def _wait(self, step: _Step) -> None:
        self._mode = "wait"
        self._waiting_on = step

    def _read_content(self, at: float) -> bool:
        reader = self._content
        assert reader is not None
        data = bytes(self._cbuf)
        left = reader.feed(data)
        if left is None:
            self._consume(len(data))
            return False
        self._consume(len(data) - left)
        step = _Step("data", at - self.start, pipelined=bool(self._awaiting))
        step.content = reader.finish()
        if self._lmtp:
            step.owed = max(1, self._recipients)
        self._content = None
        self._mode = "command"
        self._add(step)
        return True

    def _read_chunk(self, at: float) -> bool:
        take = min(self._chunk_left, len(self._cbuf))
        if take:
            piece = bytes(self._cbuf[:take])
            self._consume(take)
            self._chunk_left -= take
            self._chunk_digest.update(piece)
            self._chunk_size += take
            if self.keep_content:
                self._chunk_parts.append(piece)
        if self._chunk_left:
            return False
        step = self._chunk
        assert step is not None
        data = b"".join(self._chunk_parts) if self.keep_content else None
        step.content = Content(self._chunk_size, self._chunk_digest.hexdigest(), data)
        step.at = at - self.start
        self._chunk = None
        self._chunk_parts = []
        self._mode = "command"
        return True

    # -- the server's bytes -------------------------------------------------------

    def _reply_line(self, at: float, line: bytes) -> None:
        match = _REPLY_LINE.match(line)
        if match is None:
            if self._reply_lines:
                self._close_reply(at)
            self._deliver(RecordedReply(None, (line.decode("utf-8", "replace"),), at - self.start))
            return
        code = int(match.group(1))
        if self._reply_lines and code != self._reply_code:
            self._close_reply(at)
        if len(self._reply_lines) >= MAX_REPLY_LINES:
            self.give_up(f"reply longer than {MAX_REPLY_LINES} lines")
            return
        self._reply_code = code
        self._reply_lines.append(line[4:].decode("utf-8", "replace"))
        if match.group(2) != b"-":
            self._close_reply(at)

    def _close_reply(self, at: float) -> None:
        lines = tuple(self._reply_lines)
        code = self._reply_code
        self._reply_lines = []
        self._reply_code = None
        enhanced = None
        match = _ENHANCED.match(lines[0]) if lines else None
        if match is not None and code is not None and int(match.group(1)) == code // 100:
            enhanced = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
        self._deliver(RecordedReply(code, lines, at - self.start, enhanced))

    def _deliver(self, reply: RecordedReply) -> None:
        if not self._awaiting:
            step = _Step("unasked", reply.at, owed=0)
            step.replies.append(reply)
            self._steps.append(step)
            return
        step = self._awaiting[0]
        step.replies.append(reply)
        if len(step.replies) >= step.owed:
            self._awaiting.popleft()
        self._note_reply(step, reply)
        if step is self._waiting_on and len(step.replies) >= step.owed:
            self._resolve(step, reply)

    def _note_reply(self, step: _Step, reply: RecordedReply) -> None:
        verb = step.verb
        positive = reply.code is not None and reply.code < 300
        if verb == "MAIL":
            self._recipients = 0
        elif verb == "RCPT" and positive:
            self._recipients += 1
        elif verb in ("RSET", "EHLO", "HELO", "LHLO") or step.kind == "data":
            self._recipients = 0

    def _resolve(self, step: _Step, reply: RecordedReply) -> None:
        self._waiting_on = None
        code = reply.code
        verb = step.verb
        if verb == "DATA" and code == 354:
            self._content = _ContentReader(self.keep_content)
            self._mode = "content"
        elif (verb == "AUTH" or step.kind == "sasl") and code == 334:
            self._sasl_next = True
            self._mode = "command"
        elif verb == "STARTTLS" and code == 220:
            self._mode = "tls"
            return
        else:
            self._mode = "command"
        self._parse_client(self._last_time)
