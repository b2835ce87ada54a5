"""The SMTP client as a state machine with no I/O: commands in, bytes out; bytes in, replies out.

State rules. ``state`` is what the client has committed to by what it sent;
replies confirm or undo it. A command may be sent only in these states:

    state      entered when                          may send
    ---------  ------------------------------------  ----------------------------------------
    BANNER     the connection opens                  nothing (wait for the greeting)
    GREETED    a 2xx banner, STARTTLS done, RSET     HELO EHLO LHLO NOOP RSET VRFY EXPN QUIT
    READY      HELO/EHLO/LHLO sent, a transaction    MAIL HELO EHLO LHLO STARTTLS AUTH RSET
               ended, RSET sent                      NOOP VRFY EXPN QUIT
    MAIL       MAIL sent                             RCPT RSET NOOP QUIT
    RCPT       RCPT sent                             RCPT DATA BDAT RSET NOOP QUIT
    DATA       DATA sent, 354 not yet seen           nothing (wait for the reply)
    CONTENT    354 received                          the message content, then READY
    BDAT       a BDAT chunk without LAST sent        BDAT RSET QUIT
    TLS        220 to STARTTLS received              nothing until tls_established()
    AUTH       334 to AUTH received                  the next SASL response (auth_response)
    REJECTED   a non-2xx banner                      QUIT
    CLOSED     QUIT sent, 221 or 421 received, EOF   nothing

Pipelining (RFC 2920): with replies outstanding, a new command may be sent only
if the server advertised PIPELINING and the last command sent does not end a
group (EHLO, HELO, LHLO, DATA, VRFY, EXPN, NOOP, QUIT, STARTTLS, AUTH). Replies
are matched to commands in order. When the last outstanding reply arrives,
``state`` is set to what the replies confirmed, so a rejected MAIL FROM with
pipelined RCPTs and DATA behind it ends in READY, not DATA.

AUTH (RFC 4954): ``auth(line)`` sends the AUTH command; each 334 challenge
moves to AUTH, where ``auth_response(line)`` answers it; 235 or an error
reply ends the exchange in READY. Every reply of the exchange is a ``Response``
at ``Step.AUTH``.

Recorded commands (``send_raw``): a replay sends what a real client sent, in
its order, whether or not the rules above allow it; its replies are matched in
order all the same, and what they confirm updates the state, so a replay reads
the server's replies through the same machine as generated traffic.

LMTP (RFC 2033): after LHLO, the final dot (or the last BDAT chunk) gets one
reply per accepted recipient, each a ``Response`` at ``Step.DATA_END``; so the
last BDAT chunk may only go once every RCPT reply is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final

from smtpbench.protocol import commands
from smtpbench.protocol.capabilities import NO_CAPABILITIES, Capabilities, parse_ehlo
from smtpbench.protocol.errors import LocalProtocolError, RemoteProtocolError
from smtpbench.protocol.message import dot_stuff
from smtpbench.protocol.replies import DEFAULT_MAX_LINE_LENGTH, Reply, ReplyParser
from smtpbench.protocol.steps import Step


class State(Enum):
    BANNER = auto()
    GREETED = auto()
    READY = auto()
    MAIL = auto()
    RCPT = auto()
    DATA = auto()
    CONTENT = auto()
    BDAT = auto()
    TLS = auto()
    AUTH = auto()
    REJECTED = auto()
    CLOSED = auto()

    # Members are singletons compared by identity: hashing them by identity (C) rather
    # than by name (Enum's own __hash__, Python) makes the per-command state look-ups
    # cheap.
    __hash__ = object.__hash__


class Response:
    """A reply matched to the command it answers. A plain class, not a tuple: one is made
    per reply, and a compiled build makes it without a Python call."""

    __slots__ = ("reply", "step")

    def __init__(self, step: Step, reply: Reply) -> None:
        self.step = step
        self.reply = reply

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return self.step is other.step and self.reply == other.reply

    def __hash__(self) -> int:
        return hash((self.step, self.reply))

    def __repr__(self) -> str:
        return f"Response(step={self.step!r}, reply={self.reply!r})"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The server closed the connection; ``pending`` is the command left unanswered, if any."""

    pending: Step | None


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
# The steps and the states, as module constants for the code below (``_IN_`` names a
# state): Python 3.11 reaches an enum member through its class with a Python-level call
# (about 70 ns), and, Final, a compiled build keeps them in C variables instead of looking
# them up by name. The tables keep the enums' own names.
_MAIL: Final = Step.MAIL
_RCPT: Final = Step.RCPT
_DATA: Final = Step.DATA
_DATA_END: Final = Step.DATA_END
_AUTH: Final = Step.AUTH
_BANNER: Final = Step.BANNER
_BDAT: Final = Step.BDAT
_EHLO: Final = Step.EHLO
_EXPN: Final = Step.EXPN
_HELO: Final = Step.HELO
_LHLO: Final = Step.LHLO
_NOOP: Final = Step.NOOP
_QUIT: Final = Step.QUIT
_RSET: Final = Step.RSET
_STARTTLS: Final = Step.STARTTLS
_VRFY: Final = Step.VRFY
_XCLIENT: Final = Step.XCLIENT
_READY: Final = State.READY
_IN_MAIL: Final = State.MAIL
_IN_RCPT: Final = State.RCPT
_IN_AUTH: Final = State.AUTH
_IN_BANNER: Final = State.BANNER
_IN_BDAT: Final = State.BDAT
_IN_CLOSED: Final = State.CLOSED
_IN_CONTENT: Final = State.CONTENT
_IN_GREETED: Final = State.GREETED
_IN_REJECTED: Final = State.REJECTED
_IN_TLS: Final = State.TLS
Event = Response | ConnectionClosed | _NeedData

_ALLOWED: Final[dict[State, frozenset[Step]]] = {
    State.BANNER: frozenset(),
    State.GREETED: frozenset(
        {Step.HELO, Step.EHLO, Step.LHLO, Step.NOOP, Step.RSET, Step.VRFY, Step.EXPN, Step.QUIT}
    ),
    State.READY: frozenset(
        {
            Step.MAIL,
            Step.HELO,
            Step.EHLO,
            Step.LHLO,
            Step.STARTTLS,
            Step.AUTH,
            Step.RSET,
            Step.NOOP,
            Step.VRFY,
            Step.EXPN,
            Step.QUIT,
            Step.XCLIENT,
        }
    ),
    State.MAIL: frozenset({Step.RCPT, Step.RSET, Step.NOOP, Step.QUIT}),
    State.RCPT: frozenset({Step.RCPT, Step.DATA, Step.BDAT, Step.RSET, Step.NOOP, Step.QUIT}),
    State.DATA: frozenset(),
    State.CONTENT: frozenset({Step.DATA_END}),
    State.BDAT: frozenset({Step.BDAT, Step.RSET, Step.QUIT}),
    State.TLS: frozenset(),
    State.AUTH: frozenset({Step.AUTH}),
    State.REJECTED: frozenset({Step.QUIT}),
    State.CLOSED: frozenset(),
}

_ENDS_GROUP: Final[frozenset[Step]] = frozenset(
    {
        Step.EHLO,
        Step.HELO,
        Step.LHLO,
        Step.DATA,
        Step.VRFY,
        Step.EXPN,
        Step.NOOP,
        Step.QUIT,
        Step.STARTTLS,
        Step.AUTH,
        Step.XCLIENT,
    }
)
# Where a command leaves the client when the server says yes.
_SENT_STATE: Final[dict[Step, State]] = {
    Step.HELO: State.READY,
    Step.EHLO: State.READY,
    Step.LHLO: State.READY,
    Step.MAIL: State.MAIL,
    Step.RCPT: State.RCPT,
    Step.DATA: State.DATA,
    Step.DATA_END: State.READY,
    Step.RSET: State.READY,
    Step.QUIT: State.CLOSED,
    Step.STARTTLS: State.TLS,
}


class ClientConnection:
    """One SMTP client connection's protocol state. Not thread-safe; one per connection."""

    __slots__ = (
        "_accepted_recipients",
        "_confirmed",
        "_last_sent",
        "_lmtp",
        "_mail_address",
        "_mail_line",
        "_mail_params",
        "_parser",
        "_pending",
        "_saw_eof",
        "capabilities",
        "state",
    )

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        self._parser = ReplyParser(max_line_length=max_line_length)
        # Replies owed, oldest first: a list (a few at most, more only in LMTP), which a
        # compiled build appends to and pops in C.
        self._pending: list[Step] = [_BANNER]
        self._confirmed = _IN_BANNER
        self._last_sent: Step = _BANNER
        self._accepted_recipients = 0
        self._saw_eof = False
        self._lmtp = False
        self.state = _IN_BANNER
        self.capabilities: Capabilities = NO_CAPABILITIES
        # The last MAIL FROM line made, and what it was made of.
        self._mail_address: str | None = None
        self._mail_params: dict[str, str | None] | None = None
        self._mail_line = b""

    # -- what is outstanding -------------------------------------------------

    @property
    def pending(self) -> tuple[Step, ...]:
        """Commands sent whose replies have not come yet, oldest first."""
        return tuple(self._pending)

    @property
    def outstanding(self) -> int:
        """How many replies are owed: ``len(pending)`` without building a tuple."""
        return len(self._pending)

    @property
    def next_reply(self) -> Step | None:
        """The step the next reply answers, if any is owed."""
        return self._pending[0] if self._pending else None

    @property
    def accepted_recipients(self) -> int:
        """Recipients the server accepted in the current transaction."""
        return self._accepted_recipients

    # -- commands -------------------------------------------------------------

    def _send(self, step: Step, data: bytes, *, as_step: Step | None = None) -> bytes:
        if (as_step or step) not in _ALLOWED[self.state]:
            what = (as_step or step).label
            raise LocalProtocolError(f"cannot send {what} in state {self.state.name}")
        if self._pending:
            last = self._last_sent
            if not self.capabilities.pipelining:
                raise LocalProtocolError(
                    f"cannot send {step.label} before the reply to {last.label}: "
                    "the server did not advertise PIPELINING"
                )
            if last in _ENDS_GROUP:
                raise LocalProtocolError(
                    f"cannot send {step.label} before the reply to {last.label}: "
                    f"{last.label} ends a pipelined group"
                )
        self._pending.append(step)
        self._last_sent = step
        self.state = _SENT_STATE.get(step, self.state)
        return data

    def helo(self, name: str) -> bytes:
        return self._send(_HELO, commands.helo(name))

    def ehlo(self, name: str) -> bytes:
        return self._send(_EHLO, commands.ehlo(name))

    def lhlo(self, name: str) -> bytes:
        sent = self._send(_LHLO, commands.lhlo(name))
        self._lmtp = True
        return sent

    @property
    def lmtp(self) -> bool:
        """LHLO was sent: the end of data gets one reply per accepted recipient."""
        return self._lmtp

    def mail(self, address: str, params: commands.Parameters | None = None) -> bytes:
        # Most sessions send every message from one sender with the same parameters
        # (its size): the line made for the last one is the line again.
        if params is not None and not isinstance(params, dict):
            return self._send(_MAIL, commands.mail_from(address, params))
        if address is self._mail_address and params == self._mail_params:
            return self._send(_MAIL, self._mail_line)
        line = commands.mail_from(address, params)
        # The parameters kept as a copy: a dict the caller changes later is not the same.
        self._mail_params = None if params is None else dict(params)
        self._mail_address, self._mail_line = address, line
        return self._send(_MAIL, line)

    def rcpt(self, address: str, params: commands.Parameters | None = None) -> bytes:
        return self._send(_RCPT, commands.rcpt_to(address, params))

    def data(self) -> bytes:
        return self._send(_DATA, commands.data())

    def message(self, content: bytes, dots: tuple[int, ...] | None = None) -> bytes:
        """The content after a 354, dot-stuffed and terminated; its reply is ``DATA_END``.
        ``dots``: where its lines that start with "." start, when known (see ``dot_stuff``)."""
        if self.state is not _IN_CONTENT:
            raise LocalProtocolError(f"cannot send message content in state {self.state.name}")
        sent = self._send(_DATA_END, dot_stuff(content, dots))
        self._expect_more_end_replies()
        return sent

    def _expect_more_end_replies(self) -> None:
        # RFC 2033 section 4.2: one reply per recipient that was accepted.
        if self._lmtp:
            self._pending.extend([_DATA_END] * (self._accepted_recipients - 1))

    def bdat(self, chunk: bytes, last: bool) -> bytes:
        """One BDAT chunk with its command line; the LAST chunk's reply is ``DATA_END``."""
        if not self.capabilities.chunking:
            raise LocalProtocolError("cannot send BDAT: the server did not advertise CHUNKING")
        if last and self._lmtp and _RCPT in self._pending:
            raise LocalProtocolError(
                "cannot send the last BDAT chunk before every RCPT reply: in LMTP it gets "
                "one reply per accepted recipient"
            )
        data = commands.bdat(len(chunk), last) + chunk
        sent = self._send(_DATA_END if last else _BDAT, data, as_step=_BDAT)
        self.state = _READY if last else _IN_BDAT
        if last:
            self._expect_more_end_replies()
        return sent

    def rset(self) -> bytes:
        return self._send(_RSET, commands.rset())

    def noop(self) -> bytes:
        return self._send(_NOOP, commands.noop())

    def vrfy(self, target: str) -> bytes:
        return self._send(_VRFY, commands.vrfy(target))

    def expn(self, target: str) -> bytes:
        return self._send(_EXPN, commands.expn(target))

    def auth(self, line: bytes) -> bytes:
        """The AUTH command line (``sasl.auth_command``); 334 replies lead to ``auth_response``."""
        if self.state is _IN_AUTH:
            raise LocalProtocolError("cannot start AUTH again in the middle of an AUTH exchange")
        if not line[:5].upper() == b"AUTH " or not line.endswith(b"\r\n"):
            raise LocalProtocolError("an AUTH command line starts with AUTH and ends with CRLF")
        return self._send(_AUTH, line)

    def auth_response(self, response: str) -> bytes:
        """A SASL response line (base64, or ``*`` to cancel) answering a 334 challenge."""
        if self.state is not _IN_AUTH:
            raise LocalProtocolError(f"no AUTH challenge to answer in state {self.state.name}")
        if "\r" in response or "\n" in response:
            raise LocalProtocolError("a SASL response is one line")
        return self._send(_AUTH, response.encode("ascii") + b"\r\n")

    def starttls(self) -> bytes:
        return self._send(_STARTTLS, commands.starttls())

    def quit(self) -> bytes:
        return self._send(_QUIT, commands.quit_())

    def xclient(self, attributes: Mapping[str, str]) -> bytes:
        """Postfix's XCLIENT; a 220 starts the session over, as after STARTTLS: the
        client greets again and the extensions are those of the new greeting."""
        if not self.capabilities.has("XCLIENT"):
            raise LocalProtocolError("cannot send XCLIENT: the server did not advertise it")
        return self._send(_XCLIENT, commands.xclient(attributes))

    def send_raw(self, step: Step, data: bytes, replies: int = 1) -> bytes:
        """``data`` sent as a recorded client sent it, outside the rules above: no state
        or pipelining check. ``replies`` are owed to ``step`` (0 when the recorded
        client did not wait for one; an unknown verb is owed its reply as ``NOOP``)."""
        if replies:
            self._pending.extend([step] * replies)
            self._last_sent = step
            self.state = _SENT_STATE.get(step, self.state)
        if step is _LHLO:
            self._lmtp = True
        return data

    def expect(self, step: Step, replies: int) -> None:
        """``replies`` more are owed to ``step``: in LMTP a recorded end of data is owed
        one per accepted recipient, known once the RCPT replies are in."""
        self._pending.extend([step] * replies)

    def tls_established(self) -> None:
        """The TLS handshake after STARTTLS succeeded: the session starts over (RFC 3207)."""
        if self.state is not _IN_TLS or self._pending:
            raise LocalProtocolError(f"no STARTTLS to complete in state {self.state.name}")
        self.capabilities = NO_CAPABILITIES
        self._confirmed = self.state = _IN_GREETED

    # -- replies --------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the server; ``b""`` means the server closed the connection."""
        if data:
            self._parser.feed(data)
        else:
            self._saw_eof = True

    def received(self, data: bytes) -> Event:
        """``receive_data`` then ``next_event``: what a driver does with every read."""
        if data:
            return self._event(self._parser.take(data))
        self._saw_eof = True
        return self.next_event()

    @property
    def idle(self) -> bool:
        """Nothing read is waiting to be taken: ``next_event`` would say ``NEED_DATA``."""
        return not self._parser.buffered and not self._saw_eof

    def next_event(self) -> Event:
        return self._event(self._parser.next_reply())

    def _event(self, reply: Reply | None) -> Event:
        if reply is None:
            if self._saw_eof:
                self.state = self._confirmed = _IN_CLOSED
                return ConnectionClosed(self._pending[0] if self._pending else None)
            return NEED_DATA
        if not self._pending:
            if reply.code == 421:  # a server shutting down may say so unasked
                self.state = self._confirmed = _IN_CLOSED
                return Response(self._last_sent, reply)
            raise RemoteProtocolError(f"reply with no command outstanding: {reply}")
        step = self._pending.pop(0)
        self._confirm(step, reply)
        if not self._pending:
            self.state = self._confirmed
        return Response(step, reply)

    def _confirm(self, step: Step, reply: Reply) -> None:
        code = reply.code
        positive = 200 <= code < 300
        if code == 421:
            self._confirmed = _IN_CLOSED
            self._pending.clear()
            return
        confirmed = self._confirmed
        # The steps of a transaction first: they are most of every session (and looked
        # up as module names: an enum member through its class costs a Python call).
        if step is _MAIL:
            self._accepted_recipients = 0
            confirmed = _IN_MAIL if positive else _READY
        elif step is _RCPT:
            if positive and (confirmed is _IN_MAIL or confirmed is _IN_RCPT):
                self._accepted_recipients += 1
                confirmed = _IN_RCPT
        elif step is _DATA:
            # A 354 after every RCPT was refused happens with pipelining (RFC 2920
            # section 3.1): the client must then send the lone terminating dot.
            confirmed = _IN_CONTENT if code == 354 else _READY
        elif step is _DATA_END:
            confirmed = _READY
        elif step is _BANNER:
            confirmed = _IN_GREETED if positive else _IN_REJECTED
        elif step in (_EHLO, _HELO, _LHLO):
            if positive:
                confirmed = _READY
                if step is not _HELO:
                    self.capabilities = parse_ehlo(reply)
        elif step is _BDAT:
            confirmed = _IN_BDAT if positive else _READY
        elif step is _RSET:
            if positive and confirmed not in (_IN_BANNER, _IN_GREETED, _IN_REJECTED):
                confirmed = _READY
        elif step is _STARTTLS:
            confirmed = _IN_TLS if code == 220 else confirmed
        elif step is _AUTH:
            confirmed = _IN_AUTH if code == 334 else _READY
        elif step is _QUIT:
            confirmed = _IN_CLOSED
        elif step is _XCLIENT and code == 220:
            confirmed = _IN_GREETED
            self.capabilities = NO_CAPABILITIES
        self._confirmed = confirmed
