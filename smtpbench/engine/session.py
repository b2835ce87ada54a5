"""One SMTP session as a sans-IO machine: bytes and time in, bytes out, timed and counted.

A ``Session`` is driven by the reactor (``reactor.py``): ``begin()`` gives
the generator of its conversation, which yields what it waits for
(``CONNECT``, ``READ``, a time to sleep until) and writes through the
session's ``Link``; ``ended`` is told how it ended. What the session says comes
from its ``Conversation``: the scenario's (``conversation.py``: greeting,
STARTTLS, AUTH, transactions, QUIT) or a recording's (``replay.py``). Both
use the same primitives here, so timing, counting, failures and transcripts
mean the same for generated and replayed traffic.

Timing of each step (service time):
- connect: from the start of the TCP connect to the connection being open;
- TLS handshake: from the start of the handshake (after the 220 to STARTTLS,
  or right after connect for implicit TLS) to its end;
- banner: from the connection (or the implicit TLS handshake) being ready to
  the complete greeting;
- a command sent alone: from handing its line to the socket to its complete
  reply;
- AUTH: the whole exchange, from handing over the AUTH line to the final
  reply (235 or a refusal), every 334 challenge and response in between;
- DATA end: from handing the final dot (the end of the stuffed content), or
  the last BDAT chunk, to the socket to the reply that accepts or refuses the
  message: the server's work on it. When the content needs several sends (a
  full buffer), from the start of the send that took its last byte; never
  from that send's return, since on loopback a send delivers to the server,
  which may answer before the call is back. In LMTP each recipient's reply is
  one DATA end sample, timed the same way.
- pipelined commands (RFC 2920): a group goes out in one write. Each reply in
  the group is timed from the start of that write to the arrival of the read
  that completed the reply: the time a client waits for that answer. A reply
  is never timed from an earlier reply, so a group's times do not add up: the
  last reply's time is the group's round trip. Replies that arrive in one
  read share its arrival time. When another message follows on the
  connection, a message's content (and final dot) goes out first in the next
  transaction's write (RFC 2920 section 3.1): its DATA end is timed from the
  start of the send that handed over its own last byte (a full buffer can hold
  back the commands after it while the server answers it), and the next
  group's commands from the write's start. The last
  message's content goes out with QUIT, as Postfix's client does.
Message latency is measured from the session's intended start to each
message's final reply, and session latency to the end of the session, so a
server or a tool that falls behind shows there, never hidden by a late start.

Timeouts (RFC 5321 section 4.5.3.2 by default): each step sets ``deadline``;
the reactor throws ``StepTimeout`` into a session past it. A reply not
counted as success is an ``unexpected reply`` at its step (the conversation
goes on as a real client would); a 421 ends the session. Connection errors
end the session and are classified in ``ended``; only a defect escapes it.

Secrets: the transcript of a failed session shows AUTH lines and SASL
responses as ``(credentials hidden)``; credentials live in the settings only.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import resource
import ssl
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from smtpbench.engine.delivery_queue import TRANSIENT_ERRORS, Attempt, DeliveryQueue
from smtpbench.engine.reactor import (
    CONNECT,
    READ,
    Link,
    Request,
    SessionCancelled,
    StepTimeout,
    engine_clock,
)
from smtpbench.engine.sources import SourceAddress, source_sockaddr
from smtpbench.engine.targets import Targets, resolve_targets
from smtpbench.engine.tls import SessionSetupError, client_context, failure_detail, server_name
from smtpbench.engine.tls_channel import TlsChannel
from smtpbench.engine.transcript import TRIM_AT, Shown, Transcript
from smtpbench.engine.transport import Address, classify
from smtpbench.metrics.client_groups import ClientGroups, SessionTally
from smtpbench.metrics.events import SessionEvents, SessionFailure
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol import sasl
from smtpbench.protocol.client import NEED_DATA, ClientConnection, Event, Response
from smtpbench.protocol.errors import ProtocolError, RemoteProtocolError
from smtpbench.protocol.proxy_header import proxy_header
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step
from smtpbench.scenario.client_identity import NO_CLIENT_IDENTITY, ClientIdentity
from smtpbench.scenario.model import NO_DSN, Dsn

if TYPE_CHECKING:
    from smtpbench.scenario import Scenario
    from smtpbench.transit.sends import TransitSends

Command = tuple[Step, bytes, Shown]  # what to send, and how the transcript shows it
Talk = Generator[Request, Any, None]
# The steps, as module names: cheaper than the enum's class on every session or message.
_AUTH: Final = Step.AUTH
_BANNER: Final = Step.BANNER
_CONNECT: Final = Step.CONNECT
_DATA_END: Final = Step.DATA_END
_TLS: Final = Step.TLS
MAX_AUTH_ROUNDS = 5  # challenges in one AUTH exchange; LOGIN needs 2


class ServerClosed(Exception):
    """The server closed the connection (EOF) while a reply was awaited."""


class ServerShutdown(Exception):
    """A 421: the server is closing the channel; no QUIT is due."""


class _ClosedAfterHandshake(Exception):
    """EOF before the first reply over a new TLS session: the server gave up on TLS
    (most often a client certificate it did not take, which TLS 1.3 tells after the
    client's side of the handshake is done)."""


# What ends a session and is counted as its failure (a reply, the connection, a timeout).
_SESSION_ERRORS: Final = (
    ServerClosed,
    ServerShutdown,
    _ClosedAfterHandshake,
    ProtocolError,
    OSError,
    StepTimeout,
)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session of a run shares, looked up once rather than per command."""

    address: Address
    greeting: str  # "EHLO", "HELO" or "LHLO"
    success: tuple[frozenset[int], ...]  # indexed by Step
    timeouts: tuple[float, ...]  # indexed by Step
    pipelining: bool = False
    chunking: bool = False
    chunk_size: int = 65536
    body: str = "7bit"
    smtputf8: bool = False
    dsn: Dsn = NO_DSN
    required: tuple[str, ...] = ()  # extensions the server must advertise
    tls_mode: str = "none"  # "none", "starttls", "implicit"
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    auth_mechanism: str | None = None
    auth_username: str = field(default="", repr=False)
    auth_secret: str = field(default="", repr=False)
    transit: TransitSends | None = None  # run --through: accepted messages noted for matching
    sources: tuple[SourceAddress, ...] = ()  # local addresses, one per session in turn
    targets: Targets | None = None  # target.hosts: several servers, one per session
    target_names: tuple[str | None, ...] = ()  # the TLS server name of each of them
    queue: DeliveryQueue | None = None  # [delivery] mode = "mta": deferred messages go here
    proxy_version: int = 0  # [client] proxy: a PROXY protocol header first, v1 or v2
    claimed: tuple[str, ...] = ()  # the client addresses it claims, one per session in turn
    client: ClientIdentity = NO_CLIENT_IDENTITY  # [client]: what XCLIENT says
    clients: ClientGroups | None = None  # figures per client (source or claimed address)

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, address: Address, environ: Mapping[str, str] | None = None
    ) -> SessionSettings:
        """``SessionSetupError`` when a TLS file cannot be read or credentials are missing."""
        session = scenario.session
        tls = scenario.tls
        context = client_context(tls) if tls.enabled else None
        try:
            targets = resolve_targets(scenario.target, address)
        except OSError as err:
            raise SessionSetupError(str(err)) from None
        username = secret = ""
        if scenario.auth.enabled:
            try:
                username, secret = scenario.auth.credentials(
                    os.environ if environ is None else environ
                )
            except ValueError as err:
                raise SessionSetupError(str(err)) from None
        return cls(
            address=address,
            greeting=session.greeting,
            success=tuple(scenario.success),
            timeouts=tuple(scenario.timeouts),
            pipelining=session.pipelining,
            chunking=session.chunking,
            chunk_size=session.chunk_size,
            body=session.body,
            smtputf8=session.smtputf8,
            dsn=session.dsn,
            required=session.extensions_asked(),
            tls_mode=tls.mode,
            ssl_context=context,
            server_hostname=server_name(tls, address.host) if tls.enabled else None,
            auth_mechanism=scenario.auth.mechanism,
            auth_username=username,
            auth_secret=secret,
            sources=tuple(source_sockaddr(a) for a in scenario.target.source),
            proxy_version=scenario.client.proxy,
            claimed=scenario.client.addresses,
            client=scenario.client,
            targets=targets,
            target_names=tuple(
                server_name(tls, a.host) if tls.enabled else None
                for a in (targets.addresses if targets is not None else ())
            ),
        )


def preflight(scenario: Scenario, environ: Mapping[str, str] | None = None) -> None:
    """What every session needs, checked before anything runs: ``SessionSetupError``
    when a TLS file cannot be read or AUTH has no credentials; ``ValueError`` naming the
    file when the ``[content]`` corpus, body file or DKIM key cannot be used."""
    if scenario.tls.enabled:
        client_context(scenario.tls)
    if scenario.auth.enabled:
        try:
            scenario.auth.credentials(os.environ if environ is None else environ)
        except ValueError as err:
            raise SessionSetupError(str(err)) from None
    if not scenario.content.is_plain:
        from smtpbench.scenario.rich_content import RichContent

        RichContent(scenario.content, seed=0)  # reads the corpus and the key once


class Conversation(Protocol):
    """What a session says: a plan of the scenario, or a recorded session."""

    @property
    def number(self) -> int: ...

    def talk(self, session: Session) -> Talk: ...


class Session:
    """One session: the reactor drives the generator ``begin()`` gives, and tells
    ``ended`` how it ended."""

    __slots__ = (
        "address",
        "arrival",
        "asked_at",
        "asked_whole",
        "clock",
        "conn",
        "conversation",
        "deadline",
        "deferred",
        "deferred_recipients",
        "delivery",
        "failure",
        "fresh_tls",
        "intended",
        "link",
        "messages_begun",
        "messages_ended",
        "metrics",
        "origin",
        "server_hostname",
        "settings",
        "source",
        "start",
        "step",
        "tally",
        "timeouts",
        "tls",
        "transcript",
        "unanswered",
    )

    def __init__(
        self,
        settings: SessionSettings,
        metrics: SessionEvents,
        conversation: Conversation,
        intended: float,
        clock: Callable[[], float],
        domain: str | None = None,
        *,
        origin: float | None = None,
        tries: int = 1,
        delivered_before: int = 0,
        whole_transcript: bool = False,
    ) -> None:
        """``domain``: the first recipient's, for ``target.choose = "recipient-domain"``.
        A message tried again (``[delivery] mode = "mta"``) gives its first attempt's
        intended start as ``origin`` (message latency counts from there), the number of
        this attempt as ``tries``, and how many recipients earlier ones delivered it to.
        ``whole_transcript``: keep every line, not the bounded transcript of a run."""
        self.settings = settings
        self.address = settings.address
        self.server_hostname = settings.server_hostname
        targets = settings.targets
        if targets is not None:
            chosen = targets.pick(conversation.number, domain)
            self.address = targets.addresses[chosen]
            self.server_hostname = settings.target_names[chosen]
        sources = settings.sources
        self.source = sources[conversation.number % len(sources)] if sources else None
        self.tally = SessionTally() if settings.clients is not None else None
        self.timeouts = settings.timeouts
        self.metrics = metrics
        self.conversation = conversation
        self.intended = intended
        self.origin = intended if origin is None else origin
        self.delivery: Attempt | None = None
        transactions = (
            getattr(conversation, "transactions", None) if settings.queue is not None else None
        )
        if settings.queue is not None and transactions is not None:
            plan = conversation.plan  # type: ignore[attr-defined]
            self.delivery = Attempt(
                settings.queue, plan, transactions, self.origin, tries, delivered_before
            )
        self.clock = engine_clock(clock)
        self.deadline = math.inf
        self.start = 0.0
        self.arrival = 0.0  # when the last read from the server returned
        self.asked_at = 0.0  # when the command ask() sent was handed over
        self.asked_whole = True  # and whether the kernel took all of it at once
        self.link: Link | None = None
        self.tls: TlsChannel | None = None
        self.fresh_tls = False  # a TLS handshake is done and nothing was read over it yet
        self.conn = ClientConnection()
        self.step = _CONNECT
        self.failure: tuple[ErrorClass, Step, str] | None = None
        self.messages_begun = 0
        self.messages_ended = 0
        # With pipelining, a message's content waits to go out in one write with the
        # next transaction's commands, or with QUIT (RFC 2920 section 3.1 allows
        # content first in a group): one write and one round trip per message.
        self.deferred: Command | None = None
        self.deferred_recipients = 0  # the recipients that took the deferred content's message
        # Bounded: the opening, the failure, the end (see transcript.py).
        self.transcript = Transcript(bounded=not whole_transcript)
        # What each outstanding reply answers, as the transcript shows it, oldest first.
        # (A list: a few at most, and a compiled build appends and pops a list in C.)
        self.unanswered: list[Shown] = []

    # -- the session ----------------------------------------------------------------

    def now(self) -> float:
        """The time on the run's clock (trio's)."""
        return self.clock.read()

    def begin(self) -> Talk:
        """Starts the session: the generator the reactor drives is the conversation's
        own, with nothing of the session's wrapped around it (every reply would resume
        one generator more); how it ends is told to ``ended``."""
        self.start = self.now()
        self.metrics.session_started(self.start - self.intended)
        return self.conversation.talk(self)

    def ended(self, error: Exception | None) -> None:
        """The conversation returned (``error`` None) or raised ``error``: the session is
        counted and recorded. An error that no session raises (a defect) is raised again."""
        if error is not None:
            if isinstance(error, SessionCancelled):
                self.fail(ErrorClass.CANCELLED, self.step, "cut off at the end of the run")
            elif isinstance(error, _SESSION_ERRORS):
                self._connection_failed(error)
            else:
                raise error
        if self.tls is not None and self.link is not None and self.link.sock is not None:
            # close_notify, best effort: the reactor closes the socket right after.
            with contextlib.suppress(OSError):
                self.link.write(self.tls.close_notify())
        self._finish()
        # The link holds this session's generator, which holds the session: let go of it,
        # so that the session, its plan and its messages go as soon as the reactor lets
        # go of the link, not at a pass of the cycle collector. Left to the collector,
        # a long session's plans lived on into its oldest generation, and each full pass
        # over them stalled the reactor (30 ms seen, reusing connections).
        self.link = None

    def arm(self, step: Step, since: float) -> None:
        """``step`` is under way since ``since``: it must be done within its timeout."""
        self.step = step
        self.deadline = since + self.timeouts[step]

    # -- connecting -----------------------------------------------------------------

    def open(self) -> Generator[Request, Any, float]:
        """Connects (and with implicit TLS, shakes hands); the time it became ready."""
        self.arm(_CONNECT, self.start)
        try:
            self.link = yield CONNECT
        except ConnectionResetError:
            # A reset, not a refusal (that is ECONNREFUSED): the handshake was done and the
            # server dropped the connection at once, before it could greet. Whether the
            # reset is seen before the connect is known to be done is a race; either way the
            # connection opened, and the reset is the next step's (the banner, or implicit
            # TLS's handshake), as when it comes a moment later.
            self.metrics.timed(_CONNECT, self.now() - self.start)
            self.arm(_TLS if self.settings.tls_mode == "implicit" else _BANNER, self.now())
            raise
        ready = self.now()
        self.metrics.timed(_CONNECT, ready - self.start)
        settings = self.settings
        if settings.proxy_version:  # who the client is, before anything else (and TLS)
            number = self.conversation.number
            self.write(
                proxy_header(
                    settings.proxy_version,
                    settings.claimed[number % len(settings.claimed)],
                    1024 + number % 64000,
                    str(self.address.sockaddr[0]),
                    self.address.port,
                )
            )
        if settings.tls_mode == "implicit":
            yield from self.handshake()
            ready = self.now()
        return ready

    def banner(self, ready: float) -> Generator[Request, Any, Reply]:
        """The server's greeting, timed from ``ready``."""
        self.arm(_BANNER, ready)
        self.unanswered.append(None)
        reply = (yield from self.read_reply()).reply
        self.unanswered.pop(0)
        self.count(_BANNER, None, reply, self.arrival - ready)
        return reply

    def handshake(self) -> Generator[Request, Any, None]:
        """The TLS handshake over the connection, timed as its own step."""
        settings = self.settings
        assert settings.ssl_context is not None
        began = self.now()
        self.arm(_TLS, began)
        tls = TlsChannel(settings.ssl_context, self.server_hostname)
        self.tls = tls
        link = self.link
        assert link is not None
        while not tls.handshake():
            out = tls.pending_output()
            if out:
                link.write(out)
            data = yield READ
            tls.received(data)
        out = tls.pending_output()
        if out:
            link.write(out)
        self.metrics.timed(_TLS, self.now() - began)
        self.fresh_tls = True

    # -- commands on the wire -------------------------------------------------------

    def write(self, data: bytes, first: int = 0, began: float = 0.0) -> bool:
        """Hands ``data`` to the connection; True when the kernel took all of it at once.
        ``first``: the length of a first part whose end the link notes apart (``began``:
        the time taken just before this call, noted if this call's send takes it)."""
        link = self.link
        assert link is not None
        self.metrics.sent(len(data))
        tls = self.tls
        if tls is not None:
            if first:  # encrypted apart, so that its end is known on the wire
                head = tls.encrypt(data[:first])
                data, first = head + tls.encrypt(data[first:]), len(head)
            else:
                data = tls.encrypt(data)
        return link.write(data, first, began) if first else link.write(data)

    def authenticate(self, name: str) -> Generator[Request, Any, Reply]:
        """SMTP AUTH (RFC 4954) with mechanism ``name`` and the settings' credentials: the
        AUTH line, then a response to each 334 challenge, counted as one AUTH step from
        the AUTH line to the final reply (235 or a refusal), which is returned."""
        settings = self.settings
        conn = self.conn
        mechanism = sasl.client_mechanism(name, settings.auth_username, settings.auth_secret)
        line = sasl.auth_command(mechanism)
        shown: Shown = sasl.redact_auth_line(line)
        self.unanswered.append(shown)
        began = self.now()
        self.arm(_AUTH, began)
        self.write(conn.auth(line))
        for _ in range(MAX_AUTH_ROUNDS):
            reply = (yield from self.read_reply()).reply
            if reply.code != 334:
                break
            self.transcript.lines.append((shown, reply))
            challenge = reply.lines[0].strip() if reply.lines else ""
            response = conn.auth_response(mechanism.respond(challenge))
            shown = self.unanswered[0] = sasl.redact_auth_line(response)
            self.write(response)
        else:
            raise RemoteProtocolError(f"AUTH {name}: more than {MAX_AUTH_ROUNDS} challenges")
        self.unanswered.pop(0)
        self.count(_AUTH, shown, reply, self.arrival - began)
        return reply

    def written_since(self, began: float, done_at_once: bool) -> float:
        """When the send that handed over the last write's last byte began: ``began``
        (taken just before the write) when it all went at once, else when the reactor's
        send that finished it began. A reply is timed from there, not from the send's
        return: the server may be at work (or done) before that call is back."""
        if done_at_once:
            return began
        link = self.link
        assert link is not None
        return link.written_at

    def exchange(self, step: Step, line: bytes) -> Generator[Request, Any, Reply]:
        """Sends one command, waits for its reply, times and counts it: ``ask`` and
        ``answer`` in a generator of their own, for the commands not sent for every
        message (the greeting, RSET, NOOP, QUIT...); an earlier message's deferred
        content goes first, in one write with it. The transcript shows the line as sent."""
        if self.deferred is not None:  # the earlier message's content goes first
            return (yield from self.send_group([(step, line, line)]))[0].reply
        reply = self.ask(step, line)
        while reply is None:
            reply = self.answer((yield READ))
        return reply

    def ask(self, step: Step, line: bytes, shown: Shown = None) -> Reply | None:
        """``exchange`` without a generator, for the commands of every message: sends the
        command; its reply if it is in already, else None, and ``answer`` is given each
        read until it returns it. Nothing deferred may wait to go first (a pipelined
        session's content goes with the next group: ``send_group``)."""
        shown = shown or line
        self.unanswered.append(shown)
        self.step = step
        began = self.now()
        self.asked_at = began
        self.deadline = began + self.timeouts[step]
        self.metrics.sent(len(line))
        link = self.link
        assert link is not None
        # A message's content may take several sends: its reply is timed from the start
        # of the one that took its last byte (see written_since).
        self.asked_whole = link.write(line if self.tls is None else self.tls.encrypt(line))
        conn = self.conn
        if conn.idle:
            return None
        event = conn.next_event()
        return None if event is NEED_DATA else self._answered(event)

    def answer(self, data: bytes) -> Reply | None:
        """What a read brings to the command ``ask`` sent: its reply once it is whole."""
        event = self._received(data)
        return None if event is NEED_DATA else self._answered(event)

    def _answered(self, event: Event) -> Reply:
        response = self._response(event)
        shown = self.unanswered.pop(0)
        since = self.written_since(self.asked_at, self.asked_whole)
        self.count(response.step, shown, response.reply, self.arrival - since)
        return response.reply

    def send_group(self, commands: list[Command]) -> Generator[Request, Any, list[Response]]:
        """Writes ``commands`` in one send and reads every reply they are owed, in order.

        Each reply is timed from the start of the write, a DATA end from its end
        (see the module docstring); in LMTP the end of data is owed one reply per
        accepted recipient, and all of them are read here.
        """
        conn = self.conn
        deferred = self.deferred
        if deferred is not None:
            self.deferred = None
            commands = [deferred, *commands]
        for _, _, shown in commands:
            self.unanswered.append(shown)
        data = commands[0][1] if len(commands) == 1 else b"".join([c[1] for c in commands])
        began = self.now()
        self.arm(commands[0][0], began)
        # The earlier message's content goes first: its end of data is timed from when
        # its own last byte went, which may be before the whole group's (a full buffer).
        content = len(deferred[1]) if deferred is not None and len(commands) > 1 else 0
        at_once = self.write(data, content, began)
        written = began if at_once else None
        # LMTP: the end of data is owed one reply per accepted recipient.
        for _ in range(conn.outstanding - len(self.unanswered)):
            self.unanswered.append("(the same message, for the next recipient)")
        responses = []
        timeouts = self.timeouts
        unanswered = self.unanswered
        waiting_since = began
        while (step := conn.next_reply) is not None:
            # Each reply is owed within its step's timeout of the last one's arrival.
            self.step = step
            self.deadline = waiting_since + timeouts[step]
            event = NEED_DATA if conn.idle else conn.next_event()
            while event is NEED_DATA:
                event = self._received((yield READ))
            response = self._response(event)
            waiting_since = self.arrival
            shown = unanswered.pop(0)
            if response.step is _DATA_END:
                if content and not at_once:
                    content = 0  # the first end of data in the group is the content's
                    link = self.link
                    assert link is not None
                    since = link.marked_at
                else:
                    if written is None:
                        written = self.written_since(began, False)
                    since = written
            else:
                since = began
            self.count(response.step, shown, response.reply, self.arrival - since)
            responses.append(response)
        if deferred is not None:
            # The earlier message's end of data: its outcome is told here, not to the caller.
            self.message_done([responses.pop(0).reply], self.deferred_recipients)
        return responses

    def read_reply(self) -> Generator[Request, Any, Response]:
        conn = self.conn
        event = NEED_DATA if conn.idle else conn.next_event()
        while event is NEED_DATA:
            event = self._received((yield READ))
        return self._response(event)

    def _received(self, data: bytes) -> Event:
        """What a read brings: the next event (``NEED_DATA`` when TLS needs more)."""
        self.arrival = self.now()
        tls = self.tls
        if tls is not None:
            tls.received(data)
            plain = tls.read()
            if plain is None:
                return NEED_DATA
            data = plain
        return self.conn.received(data)

    def _response(self, event: Event) -> Response:
        if type(event) is Response:
            self.fresh_tls = False
            return event
        if self.fresh_tls:
            raise _ClosedAfterHandshake(
                f"the server closed the connection right after the TLS handshake, "
                f"awaiting {self.step.label} (did it refuse the client certificate?)"
            )
        raise ServerClosed(f"server closed the connection awaiting {self.step.label}")

    def count(self, step: Step, sent: Shown, reply: Reply, seconds: float) -> None:
        """A reply to ``step``: its time and code, in the transcript; a reply the scenario
        does not count as success is an error at that step, and a 421 ends the session."""
        code = reply.code
        self.metrics.reply(step, code, seconds, reply.enhanced)
        if self.delivery is not None:
            self.delivery.reply(step, code)
        if self.tally is not None:
            self.tally.reply(code, seconds if step is _DATA_END else None)
        lines = self.transcript.lines
        lines.append((sent, reply))
        if len(lines) > TRIM_AT:
            self.transcript.trim()
        if code not in self.settings.success[step]:
            self.metrics.error(ErrorClass.REPLY, step)
            self.note(ErrorClass.REPLY, step, str(reply))
            if code == 421:
                raise ServerShutdown(str(reply))

    # -- messages -------------------------------------------------------------------

    def message_begun(self) -> None:
        self.messages_begun += 1
        if self.delivery is not None:
            self.delivery.begun()

    def message_refused(self) -> None:
        """The message ended before its content was sent (MAIL, every RCPT or DATA refused)."""
        if self.delivery is not None:
            self._settle()
            return
        self._message(False, None)
        if self.settings.transit is not None:
            self.settings.transit.refused(self.conversation.number, self.messages_ended)
        self.messages_ended += 1

    def message_done(self, finals: list[Reply], recipients: int | None = None) -> None:
        """The end-of-data replies of one message (one each per recipient in LMTP), and
        how many recipients took it (when not the connection's current transaction's:
        a pipelined message's content goes out with the next transaction)."""
        if self.delivery is not None:
            self._settle()
            return
        if not finals:
            self.message_refused()
            return
        success = self.settings.success[_DATA_END]
        accepted = False
        for reply in finals:  # a loop, not any(): this runs for every message
            if reply.code in success:
                accepted = True
                break
        self._message(accepted, self.arrival - self.origin)
        transit = self.settings.transit
        if transit is not None:  # messages end in the order they began: the index is the count
            number = self.conversation.number
            if accepted:
                if recipients is None:
                    recipients = self._recipients_taking(finals, success)
                transit.accepted(
                    number, self.messages_ended, self.intended, self.arrival, recipients
                )
            else:
                transit.refused(number, self.messages_ended)
        self.messages_ended += 1

    def _recipients_taking(self, finals: list[Reply], success: frozenset[int]) -> int:
        """Recipients the message went to: in LMTP those whose reply took it, in SMTP those
        RCPT TO accepted."""
        if self.conn.lmtp:
            return sum(1 for reply in finals if reply.code in success)
        return self.conn.accepted_recipients

    def _message(self, accepted: bool, latency: float | None) -> None:
        self.metrics.message(accepted, latency)
        if self.tally is not None:
            self.tally.message_ended(accepted, latency)

    def _settle(self) -> None:
        """MTA-like delivery: the message is delivered, refused for good, or queued again
        for the recipients still owed (then it has no outcome yet)."""
        assert self.delivery is not None
        current = self.delivery.current
        outcome = self.delivery.settle(self.now())
        self.messages_ended += 1
        if outcome is not None:
            self._message(outcome, self.arrival - self.origin if outcome else None)
        transit = self.settings.transit
        if transit is not None and current is not None:
            # Noted by its first session's number and its place there, whichever attempt
            # delivered it, and timed from the first attempt's intended start; a message
            # deferred is prepared again by its next attempt.
            number, index = self.conversation.number, current[0]
            if outcome:
                delivered_to = self.delivery.delivered_to
                transit.accepted(number, index, self.origin, self.arrival, delivered_to)
            else:
                transit.refused(number, index)

    # -- outcomes -------------------------------------------------------------------

    def note(self, error: ErrorClass, step: Step, detail: str) -> None:
        if self.failure is None:
            self.failure = (error, step, detail)
            self.transcript.failure_noted()

    def fail(self, error: ErrorClass, step: Step, detail: str) -> None:
        self.metrics.error(error, step)
        self.note(error, step, detail)

    def _connection_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ServerShutdown):
            return  # already counted as the reply it was
        for shown in self.unanswered:
            self.transcript.lines.append((shown, None))
        self.unanswered.clear()
        if isinstance(exc, ServerClosed):
            self.fail(ErrorClass.CLOSED, self.step, str(exc))
            return
        if isinstance(exc, _ClosedAfterHandshake):
            self.fail(ErrorClass.TLS, self.step, str(exc))
            return
        error = classify(exc)
        if error in (ErrorClass.RESET, ErrorClass.NETWORK) and (
            self.step is _TLS or self.fresh_tls
        ):
            # The peer gave up on the handshake, or reset the connection before the
            # first reply over it (a refused client certificate, told after the
            # client's side of a TLS 1.3 handshake: a reset or a close, by timing).
            error = ErrorClass.TLS
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, StepTimeout):
            timeout = self.timeouts[self.step]
            detail = f"no reply to {self.step.label} within {timeout:g}s"
            if self.step is _TLS:
                detail = f"TLS handshake not done within {timeout:g}s"
        elif error is ErrorClass.TLS:
            detail = failure_detail(exc)
        elif isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            detail = (
                f"the client ran out of file descriptors (limit {soft}): "
                "raise it with `ulimit -n`, or lower the concurrency"
            )
        self.fail(error, self.step, detail)

    def _finish(self) -> None:
        end = self.now()
        failure = None
        if self.failure is not None:
            error, step, detail = self.failure
            failure = SessionFailure(error, step, detail, self.transcript.rendered())
        aborted = self.messages_begun - self.messages_ended
        delivery = self.delivery
        if delivery is not None:
            busy = failure is not None and failure.error in TRANSIENT_ERRORS
            if delivery.trouble or busy:  # a sending MTA tries again later
                aborted -= delivery.unfinished(aborted > 0, end)
                delivery.queue.session_failed()
            elif delivery.delivered_any:
                delivery.queue.session_delivered()
        self.metrics.session_ended(
            self.conversation.number,
            end,
            end - self.intended,
            aborted,
            failure,
        )
        clients = self.settings.clients
        if clients is not None and self.tally is not None:
            clients.session_ended(self.client_name(), failure is not None, self.tally)

    def client_name(self) -> str:
        """Who this session was, for the figures per client: the client it claimed
        (``[client]``), else its source address, else the target's view of it (none)."""
        settings = self.settings
        number = self.conversation.number
        if settings.claimed:
            return settings.claimed[number % len(settings.claimed)]
        if self.source is not None:
            return str(self.source[0])
        return "(this machine)"


__all__ = [
    "Command",
    "Conversation",
    "ServerClosed",
    "Session",
    "SessionSettings",
    "SessionSetupError",
    "Shown",
    "Talk",
    "preflight",
]
