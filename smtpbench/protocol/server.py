"""The SMTP server as a state machine with no I/O: bytes in, events out, replies to bytes.

The machine parses and keeps track; it never decides an answer. The caller
reads an event, chooses a reply, and passes it to ``reply()``, which encodes it
and moves the state according to what the reply said (a 250 to MAIL opens a
transaction, a 550 does not). Events come one at a time: after an event that
needs a reply, ``next_event()`` refuses to go on until ``reply()`` was called,
so the state a command is judged in is always the one the earlier replies made.
Pipelined commands (RFC 2920) sitting in the buffer simply come out one by one.

Every event except ``NeedData`` and ``ConnectionClosed`` needs exactly one reply.
Which step it answers is ``pending_step`` (``DATA_END`` for ``MessageReceived``).

State rules. A command outside its states comes out as
``CommandReceived(allowed=False)``: the caller answers 503 and nothing changes.

    state      meaning                             commands allowed
    ---------  ----------------------------------  ---------------------------------------------
    GREETING   connected, banner not sent yet      none: the banner is the pending reply
    CONNECTED  banner sent, no HELO/EHLO yet       HELO EHLO LHLO RSET NOOP VRFY EXPN QUIT
    GREETED    after HELO/EHLO, no transaction     the above + MAIL; STARTTLS, AUTH after EHLO
    MAIL       MAIL accepted                       HELO EHLO LHLO RCPT RSET NOOP VRFY EXPN QUIT
    RCPT       at least one RCPT accepted          the above + DATA BDAT
    DATA       354 sent: content up to CRLF.CRLF   none: content, then MessageReceived
    BDAT       a BDAT chunk without LAST accepted  BDAT RSET NOOP VRFY EXPN QUIT
    AUTH       334 sent: next line is for SASL     none: AuthResponse
    CLOSED     221 or 421 sent, or peer closed     none

    command        on a positive reply                  on a negative reply
    -------------  -----------------------------------  ---------------------------------
    banner         220: CONNECTED                       CLOSED
    HELO/EHLO      GREETED, transaction dropped         unchanged
    STARTTLS       220: CONNECTED over TLS, unread      unchanged
                   input dropped (RFC 3207 section 4.2)
    AUTH           334: AUTH, 235: GREETED + authed     GREETED
    MAIL           MAIL                                 unchanged
    RCPT           RCPT                                 unchanged
    DATA           354: DATA                            unchanged
    final dot      GREETED                              GREETED (the transaction is over)
    BDAT n         BDAT                                 GREETED (RFC 3030: transaction failed)
    BDAT n LAST    GREETED                              GREETED
    RSET           GREETED (CONNECTED before HELO)      unchanged
    QUIT           221: CLOSED                          unchanged
    any 421        CLOSED                               -

A BDAT chunk is read whatever the state, since its size is on the command line;
a chunk of a refused BDAT is read and dropped. A valid ``BDAT n LAST`` comes out
as ``MessageReceived(via=Step.BDAT)`` alone, so that it gets one reply.

Lines. Command lines end with CRLF or a bare LF (clients send both); message
content ends only with CRLF "." CRLF, so a bare-LF dot cannot end a message
early (the SMTP smuggling trick). A command line longer than ``max_line_length``
(512 with its CRLF, RFC 5321 section 4.5.3.1.4; AUTH lines 12288, RFC 4954)
gives one ``LineTooLong`` and the rest of it is skipped unread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final

from smtpbench.protocol.commands import MAX_COMMAND_LINE
from smtpbench.protocol.errors import LocalProtocolError
from smtpbench.protocol.steps import Step

MAX_AUTH_LINE = 12288  # RFC 4954 section 4: AUTH lines carry base64 and may be longer


class State(Enum):
    GREETING = auto()
    CONNECTED = auto()
    GREETED = auto()
    MAIL = auto()
    RCPT = auto()
    DATA = auto()
    BDAT = auto()
    AUTH = auto()
    CLOSED = auto()


_ALWAYS = frozenset(
    {State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.BDAT}
)  # the states where the client sends command lines
_HELLO = frozenset({State.CONNECTED, State.GREETED, State.MAIL, State.RCPT})

ALLOWED_IN: Final[dict[Step, frozenset[State]]] = {
    Step.HELO: _HELLO,
    Step.EHLO: _HELLO,
    Step.LHLO: _HELLO,
    Step.STARTTLS: frozenset({State.GREETED}),
    Step.AUTH: frozenset({State.GREETED}),
    Step.MAIL: frozenset({State.GREETED}),
    Step.RCPT: frozenset({State.MAIL, State.RCPT}),
    Step.DATA: frozenset({State.RCPT}),
    Step.BDAT: frozenset({State.RCPT, State.BDAT}),
    Step.RSET: _ALWAYS,
    Step.NOOP: _ALWAYS,
    Step.VRFY: _ALWAYS,
    Step.EXPN: _ALWAYS,
    Step.QUIT: _ALWAYS,
}

VERBS: Final[dict[str, Step]] = {step.name: step for step in ALLOWED_IN}


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A command line (without its line ending). ``allowed`` is False for a bad sequence."""

    step: Step
    verb: str  # upper case
    argument: str  # the rest of the line, stripped
    line: bytes
    allowed: bool = True


@dataclass(frozen=True, slots=True)
class UnrecognizedCommand:
    """A line whose verb is not an SMTP command (or not text at all)."""

    verb: str
    argument: str
    line: bytes


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went past ``limit`` bytes; the rest of it is dropped unread."""

    limit: int


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A line of a SASL exchange after a 334 challenge (base64, or ``*`` to cancel)."""

    line: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """The final dot or the last BDAT chunk arrived.

    ``size`` counts the message octets as RFC 1870 does (dot-stuffing undone,
    terminator excluded). ``data`` is the message when the connection keeps
    data and it stayed within ``max_data_size``, else None.
    """

    size: int
    data: bytes | None
    via: Step = Step.DATA  # Step.BDAT when it came in chunks


@dataclass(frozen=True, slots=True)
class NeedData:
    """Nothing more can be parsed until ``receive_data`` is called."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection, or a 221/421 reply ended the session."""


NEED_DATA: Final = NeedData()
CONNECTION_CLOSED: Final = ConnectionClosed()

Event = (
    CommandReceived
    | UnrecognizedCommand
    | LineTooLong
    | AuthResponse
    | MessageReceived
    | NeedData
    | ConnectionClosed
)


@dataclass(frozen=True, slots=True)
class _Banner:
    """The pending reply before anything was read: the greeting."""


_BANNER: Final = _Banner()

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_TERMINATOR = b"\r\n.\r\n"


class ServerConnection:
    """One SMTP server connection's protocol state. Not thread-safe; one per connection.

    ``keep_data`` keeps message content for ``MessageReceived.data``; without it
    content is only scanned for the terminator and counted, never copied, which
    is what a sink under load wants. ``max_data_size`` bounds what is kept.
    """

    __slots__ = (
        "_buf",
        "_chunk_command",
        "_chunk_last",
        "_chunk_left",
        "_chunk_ok",
        "_discarding",
        "_dots",
        "_eof",
        "_greeted",
        "_max_data_size",
        "_parts",
        "_pending",
        "_pending_step",
        "_raw_size",
        "authenticated",
        "esmtp",
        "keep_data",
        "max_line_length",
        "recipients",
        "state",
        "tls",
    )

    def __init__(
        self,
        *,
        max_line_length: int = MAX_COMMAND_LINE,
        keep_data: bool = False,
        max_data_size: int | None = None,
        tls: bool = False,
    ) -> None:
        self.max_line_length = max_line_length
        self.keep_data = keep_data
        self._max_data_size = max_data_size
        self.state = State.GREETING
        self.esmtp = False  # the client said EHLO (or LHLO), not HELO
        self.tls = tls  # set by STARTTLS; pass True for a connection that began with TLS
        self.authenticated = False
        self.recipients = 0  # accepted in the current transaction
        self._greeted = False
        self._buf = bytearray()
        self._eof = False
        self._discarding = False  # inside an over-long line, dropping until its end
        self._pending: object | None = _BANNER
        self._pending_step: Step | None = Step.BANNER
        # the message being received
        self._parts: list[bytes] | None = None
        self._raw_size = 0  # octets as sent (with dot-stuffing) already moved out of _buf
        self._dots = 0  # stuffed dots seen in them
        # the BDAT chunk being read
        self._chunk_command: CommandReceived | None = None
        self._chunk_left = 0
        self._chunk_last = False
        self._chunk_ok = False

    # -- what is going on ---------------------------------------------------------

    @property
    def awaiting_reply(self) -> bool:
        return self._pending is not None

    @property
    def pending_step(self) -> Step | None:
        """The step the next reply answers: ``BANNER`` first, ``DATA_END`` for a message,
        ``AUTH`` for a SASL line, None for an unrecognized or over-long line."""
        return self._pending_step

    @property
    def mid_command(self) -> bool:
        """The client has begun a command line, message content or a chunk and not ended
        it (what a server's command timeout applies to, not its idle timeout)."""
        return (
            bool(self._buf) or self._discarding or self._chunk_left > 0 or self.state is State.DATA
        )

    @property
    def message_size(self) -> int:
        """Octets of the message received so far in this transaction (BDAT chunks summed)."""
        return self._raw_size - self._dots

    def allows(self, step: Step) -> bool:
        """Whether the command ``step`` is in sequence now (see the table at the top)."""
        states = ALLOWED_IN.get(step)
        if states is None or self.state not in states:
            return False
        if step is Step.STARTTLS:
            return self.esmtp and not self.tls
        if step is Step.AUTH:
            return self.esmtp and not self.authenticated
        return True

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` means the client closed its side."""
        if self.state is State.CLOSED:
            return  # whatever a client pipelines after QUIT is ignored
        if self._eof:
            raise LocalProtocolError("data received after the end of the stream")
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        if self._pending is not None:
            raise LocalProtocolError("the previous event has not been replied to")
        if self.state is State.CLOSED:
            return CONNECTION_CLOSED
        if self._chunk_command is not None:
            event = self._read_chunk()
        elif self.state is State.DATA:
            event = self._read_content()
        else:
            event = self._read_line()
        if event is NEED_DATA and self._eof:
            self.state = State.CLOSED
            return CONNECTION_CLOSED
        return event

    # -- output ------------------------------------------------------------------

    def reply(
        self, code: int, text: str | Sequence[str] = "", enhanced: str | None = None
    ) -> bytes:
        """The bytes of a reply to the pending event; multi-line when ``text`` is a sequence.

        ``enhanced`` (``"2.1.5"``) leads every line's text (RFC 2034). A 421 may be
        sent at any time, pending event or not: it closes the session.
        """
        if not 200 <= code <= 599:
            raise LocalProtocolError(f"reply code {code} is not a final SMTP reply code")
        if self._pending is None and code != 421:
            raise LocalProtocolError(f"nothing is waiting for a reply (code {code})")
        out = _encode_reply(code, text, enhanced)
        self._after_reply(code)
        return out

    def reply_each(self, answers: Sequence[tuple[int, str | Sequence[str], str | None]]) -> bytes:
        """LMTP (RFC 2033 section 4.2): the replies to the end of a message, one per
        accepted recipient in RCPT order, as (code, text, enhanced) each."""
        if not isinstance(self._pending, MessageReceived):
            raise LocalProtocolError("one reply per recipient answers the end of a message only")
        if not answers:
            raise LocalProtocolError("an LMTP message is owed at least one reply")
        out = b"".join(_encode_reply(code, text, enhanced) for code, text, enhanced in answers)
        self._after_reply(answers[-1][0] if answers[-1][0] == 421 else 250)
        return out

    # -- parsing -----------------------------------------------------------------

    def _read_line(self) -> Event:
        buf = self._buf
        if self._discarding:
            end = buf.find(b"\n")
            if end < 0:
                del buf[:]
                return NEED_DATA
            del buf[: end + 1]
            self._discarding = False
        if self.state is State.AUTH or buf[:5].upper() == b"AUTH ":
            limit = max(MAX_AUTH_LINE, self.max_line_length)
        else:
            limit = self.max_line_length
        end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return NEED_DATA
            end = buf.find(b"\n", limit)
            if end < 0:
                del buf[:]
                self._discarding = True
            else:
                del buf[: end + 1]
            return self._expect(LineTooLong(limit), Step.AUTH if self.state is State.AUTH else None)
        line = bytes(buf[: end - 1 if end and buf[end - 1] == 13 else end])  # 13: CR
        del buf[: end + 1]
        if self.state is State.AUTH:
            return self._expect(AuthResponse(line), Step.AUTH)
        text = line.decode("utf-8", "replace")
        verb, _, argument = text.partition(" ")
        verb = verb.upper()
        argument = argument.strip()
        step = VERBS.get(verb)
        if step is None:
            return self._expect(UnrecognizedCommand(verb, argument, line), None)
        command = CommandReceived(step, verb, argument, line, self.allows(step))
        if step is Step.BDAT:
            chunk = parse_bdat_argument(argument)
            if chunk is not None:
                return self._start_chunk(command, *chunk)
        return self._expect(command, step)

    def _expect(self, event: Event, step: Step | None) -> Event:
        self._pending = event
        self._pending_step = step
        return event

    def _start_chunk(self, command: CommandReceived, size: int, last: bool) -> Event:
        if command.allowed and self.state is State.RCPT:
            self._start_message()
        self._chunk_command = command
        self._chunk_left = size
        self._chunk_last = last
        self._chunk_ok = command.allowed
        return self._read_chunk()

    def _read_chunk(self) -> Event:
        buf = self._buf
        take = min(len(buf), self._chunk_left)
        if take:
            if self._chunk_ok:
                self._keep(buf[:take])
                self._raw_size += take
            del buf[:take]
            self._chunk_left -= take
        if self._chunk_left:
            return NEED_DATA
        command = self._chunk_command
        assert command is not None
        self._chunk_command = None
        if self._chunk_ok and self._chunk_last:
            return self._expect(self._finish_message(b"", Step.BDAT), Step.DATA_END)
        return self._expect(command, Step.BDAT)

    def _read_content(self) -> Event:
        # The buffer starts with a CRLF put there at the 354 reply, so the
        # terminator and the stuffed dots look the same on the first line as on
        # the others: CRLF "." CRLF, and CRLF "." at a line start.
        buf = self._buf
        end = buf.find(_TERMINATOR)
        if end < 0:
            # Keep the last 4 bytes, which may start a terminator; count and drop
            # the rest. No terminator starts before ``cut``, or find() had seen it.
            cut = len(buf) - 4
            if cut > 0:
                self._dots += buf.count(b"\r\n.", 0, cut + 2)
                self._keep(buf[:cut])
                self._raw_size += cut
                del buf[:cut]
            return NEED_DATA
        body_end = end + 2  # the CRLF that ends the last line belongs to the message
        self._dots += buf.count(b"\r\n.", 0, body_end)
        self._raw_size += body_end - 2  # minus the CRLF put in front
        tail = bytes(buf[:body_end])
        del buf[: end + len(_TERMINATOR)]
        return self._expect(self._finish_message(tail, Step.DATA), Step.DATA_END)

    # -- the message --------------------------------------------------------------

    def _start_message(self) -> None:
        self._parts = [] if self.keep_data else None
        self._raw_size = 0
        self._dots = 0

    def _keep(self, data: bytearray) -> None:
        parts = self._parts
        if parts is None:
            return
        limit = self._max_data_size
        if limit is not None and self._raw_size + len(data) - self._dots > limit:
            self._parts = None  # too big to keep: the size is still counted
            return
        parts.append(bytes(data))

    def _finish_message(self, tail: bytes, via: Step) -> MessageReceived:
        size = self._raw_size - self._dots
        data: bytes | None = None
        parts = self._parts
        if parts is not None and (self._max_data_size is None or size <= self._max_data_size):
            parts.append(tail)
            joined = b"".join(parts)
            if via is Step.DATA:
                # RFC 5321 section 4.5.2: a receiver deletes the first "." of a line
                # starting with one; [2:] drops the CRLF put in front at the 354.
                joined = joined.replace(b"\r\n.", b"\r\n")[2:]
            data = joined
        self._parts = None
        return MessageReceived(size, data, via)

    # -- transitions --------------------------------------------------------------

    def _after_reply(self, code: int) -> None:
        event, step = self._pending, self._pending_step
        self._pending = None
        self._pending_step = None
        if code == 421:
            self.state = State.CLOSED
            return
        positive = code < 400
        if event is _BANNER:
            self.state = State.CONNECTED if code == 220 else State.CLOSED
        elif isinstance(event, MessageReceived):
            self._end_transaction()
        elif step is Step.AUTH and (
            self.state is State.AUTH or (isinstance(event, CommandReceived) and event.allowed)
        ):
            if code == 334:
                self.state = State.AUTH
            else:
                self.authenticated = self.authenticated or code == 235
                self.state = State.GREETED
        elif isinstance(event, CommandReceived) and event.allowed:
            self._after_command(event, code, positive)

    def _after_command(self, event: CommandReceived, code: int, positive: bool) -> None:
        step = event.step
        if step in (Step.HELO, Step.EHLO, Step.LHLO):
            if positive:
                self._greeted = True
                self.esmtp = step is not Step.HELO
                self._end_transaction()
        elif step is Step.MAIL:
            if positive:
                self.state = State.MAIL
                self.recipients = 0
        elif step is Step.RCPT:
            if positive:
                self.state = State.RCPT
                self.recipients += 1
        elif step is Step.DATA:
            if code == 354:
                self.state = State.DATA
                self._start_message()
                self._buf[0:0] = b"\r\n"
        elif step is Step.BDAT:
            # A BDAT whose argument did not parse carried no chunk: nothing changes.
            if parse_bdat_argument(event.argument) is not None:
                if positive:
                    self.state = State.BDAT
                else:
                    self._end_transaction()
        elif step is Step.RSET:
            if positive:
                self._end_transaction()
        elif step is Step.STARTTLS:
            if code == 220:
                # Anything the client sent after STARTTLS was sent in clear text and
                # must not be taken as said under TLS (RFC 3207 section 4.2).
                del self._buf[:]
                self.tls = True
                self.esmtp = self.authenticated = self._greeted = False
                self._end_transaction()
        elif step is Step.QUIT and code == 221:
            self.state = State.CLOSED

    def _end_transaction(self) -> None:
        self.state = State.GREETED if self._greeted else State.CONNECTED
        self.recipients = 0
        self._parts = None
        self._raw_size = 0
        self._dots = 0


def _encode_reply(code: int, text: str | Sequence[str], enhanced: str | None) -> bytes:
    if not 200 <= code <= 599:
        raise LocalProtocolError(f"reply code {code} is not a final SMTP reply code")
    lines = [text] if isinstance(text, str) else list(text) or [""]
    if enhanced is not None:
        if not _ENHANCED.match(enhanced) or int(enhanced[0]) != code // 100:
            raise LocalProtocolError(f"enhanced code {enhanced!r} does not fit {code}")
        lines = [f"{enhanced} {line}" if line else enhanced for line in lines]
    for line in lines:
        if "\r" in line or "\n" in line:
            raise LocalProtocolError(f"reply text contains a line break: {line!r}")
    last = len(lines) - 1
    out = "".join(f"{code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines))
    return out.encode("utf-8")


# -- argument helpers for whoever decides the replies ---------------------------------

_BDAT_ARGUMENT = re.compile(r"^([0-9]{1,18})(?:\s+(LAST))?$", re.IGNORECASE)
_PARAMETER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(?:=\S*)?$")


def parse_bdat_argument(argument: str) -> tuple[int, bool] | None:
    """``"1000 LAST"`` -> ``(1000, True)``; None when it is not ``size [LAST]``."""
    match = _BDAT_ARGUMENT.match(argument.strip())
    if match is None:
        return None
    return int(match.group(1)), match.group(2) is not None


def parse_path_argument(argument: str, keyword: str) -> tuple[str, dict[str, str | None]] | None:
    """The address and ESMTP parameters of ``MAIL FROM:`` / ``RCPT TO:`` arguments.

    ``parse_path_argument("FROM:<a@b.c> SIZE=10", "FROM")`` -> ``("a@b.c", {"SIZE": "10"})``.
    Parameter names come upper case. ``<>`` gives ``""``. A path without angle
    brackets is accepted, as many servers do. None when the syntax is wrong.
    """
    head = keyword.upper() + ":"
    if argument[: len(head)].upper() != head:
        return None
    rest = argument[len(head) :].lstrip()
    if rest.startswith("<"):
        close = rest.find(">")
        if close < 0:
            return None
        address, rest = rest[1:close], rest[close + 1 :]
        if rest and not rest[0].isspace():
            return None
    else:
        address, _, rest = rest.partition(" ")
        if not address or "<" in address or ">" in address:
            return None
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        return None  # NUL and other control characters have no place in an address
    params: dict[str, str | None] = {}
    for item in rest.split():
        if not _PARAMETER.match(item):
            return None
        name, sep, value = item.partition("=")
        params[name.upper()] = value if sep else None
    return address, params
