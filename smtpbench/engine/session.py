"""One SMTP session, driven over a socket from a plan, timed and counted step by step.

What a session does: connect; with implicit TLS, the TLS handshake; the banner;
EHLO (HELO if EHLO is refused and the scenario asks for no extension; LHLO for
LMTP); with STARTTLS, STARTTLS, the handshake and EHLO again; the check that
the server advertises every extension the scenario asks for; AUTH; then each
transaction; then QUIT.

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
- DATA end: from the moment the socket took the final dot (the whole stuffed
  content), or the last BDAT chunk, to the reply that accepts or refuses the
  message: the server's work on it. In LMTP each recipient's reply is one
  DATA end sample, timed the same way.
- pipelined commands (RFC 2920): a group (RSET, MAIL FROM, every RCPT TO and
  DATA, or the BDAT chunks) goes out in one write. Each reply in the group is
  timed from the start of that write to the arrival of the read that
  completed the reply: the time a client waits for that answer. A reply is
  never timed from an earlier reply, so a group's times do not add up: the
  last reply's time is the group's round trip. Replies that arrive in one read
  share its arrival time, so a server that answers a group in one packet (as
  Postfix does) shows the same time on every command of it. When another
  message follows on the connection, a message's content (and final dot) goes
  out first in the next transaction's write (RFC 2920 section 3.1): its DATA
  end is timed from the end of that write, and the next group's commands from
  its start, so they include sending the content. The last message's content
  goes out with QUIT, as Postfix's client does.
Message latency is measured from the session's intended start to each message's
final reply, and session latency to the end of the session, so a server or a
tool that falls behind shows there, never hidden by a late start.

A reply the scenario does not count as success is recorded as an
``unexpected reply`` at its step, and the session goes on the way a real client
would: a refused recipient is skipped, a refused transaction moves on to the
next message, a 421 ends the session. An extension the scenario asks for that
the server does not advertise ends the session as a ``protocol error`` at the
greeting, saying which extension and which scenario key asked for it.
Connection errors end the session and are classified; nothing raised here
escapes ``run_session`` but cancellation.

Secrets: the transcript of a failed session shows AUTH lines and SASL
responses as ``(credentials hidden)``; credentials live in the settings only.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from smtpbench.engine.tls import SessionSetupError, client_context, failure_detail, server_name
from smtpbench.engine.transport import Address, classify, connect
from smtpbench.metrics.kinds import MESSAGE_LATENCY, SESSION_LATENCY, START_LAG, ErrorClass
from smtpbench.metrics.snapshot import FailureRecord, TranscriptLine
from smtpbench.protocol import sasl
from smtpbench.protocol.client import NEED_DATA, ClientConnection, Response
from smtpbench.protocol.commands import orcpt, xtext
from smtpbench.protocol.errors import ProtocolError, RemoteProtocolError
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step
from smtpbench.scenario.model import NO_DSN, Dsn

if TYPE_CHECKING:
    from smtpbench.metrics.recorder import Recorder
    from smtpbench.scenario import MessageFactory, MessagePlan, Scenario, SessionPlan

RECEIVE_SIZE = 65536
MAX_AUTH_ROUNDS = 5  # challenges in one AUTH exchange; LOGIN needs 2
# The scenario key that asks for each extension, for the error when one is missing.
_ASKED_BY = {
    "8BITMIME": 'session.body = "8bitmime"',
    "SMTPUTF8": "session.smtputf8",
    "CHUNKING": "session.chunking",
    "DSN": "session.dsn",
    "STARTTLS": 'tls.mode = "starttls"',
}

Shown = bytes | int | str | None  # a command line, a content size, a redacted line, connect


class _ServerClosed(Exception):
    """The server closed the connection (EOF) while a reply was awaited."""


class _ServerShutdown(Exception):
    """A 421: the server is closing the channel; no QUIT is due."""


class _ClosedAfterHandshake(Exception):
    """EOF before the first reply over a new TLS session: the server gave up on TLS
    (most often a client certificate it did not take, which TLS 1.3 tells after the
    client's side of the handshake is done)."""


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

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, address: Address, environ: Mapping[str, str] | None = None
    ) -> SessionSettings:
        """``SessionSetupError`` when a TLS file cannot be read or credentials are missing."""
        session = scenario.session
        tls = scenario.tls
        context = client_context(tls) if tls.enabled else None
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
        )


def preflight(scenario: Scenario, environ: Mapping[str, str] | None = None) -> None:
    """What every session needs, checked before anything runs: ``SessionSetupError``
    when a TLS file cannot be read or AUTH has no credentials."""
    if scenario.tls.enabled:
        client_context(scenario.tls)
    if scenario.auth.enabled:
        try:
            scenario.auth.credentials(os.environ if environ is None else environ)
        except ValueError as err:
            raise SessionSetupError(str(err)) from None


class Session:
    """State of one session while it runs; ``run`` never raises but ``trio.Cancelled``."""

    __slots__ = (
        "arrival",
        "conn",
        "deferred",
        "factory",
        "failure",
        "fresh_tls",
        "intended",
        "messages_done",
        "plan",
        "recorder",
        "settings",
        "start",
        "step",
        "stream",
        "timer",
        "transcript",
        "unanswered",
    )

    def __init__(
        self,
        settings: SessionSettings,
        recorder: Recorder,
        factory: MessageFactory,
        plan: SessionPlan,
        intended: float,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.factory = factory
        self.plan = plan
        self.intended = intended
        self.start = 0.0
        self.arrival = 0.0  # when the last read from the server returned
        self.fresh_tls = False  # a TLS handshake is done and nothing was read over it yet
        self.conn = ClientConnection()
        self.stream: trio.abc.Stream | None = None
        self.step = Step.CONNECT
        self.failure: tuple[ErrorClass, Step, str] | None = None
        self.messages_done = 0
        # With pipelining, a message's content waits to go out in one write with the
        # next transaction's commands, or with QUIT (RFC 2920 section 3.1 allows
        # content first in a group): one write and one round trip per message
        # instead of two.
        self.deferred: tuple[Step, bytes, Shown] | None = None
        self.transcript: list[tuple[Shown, Reply | None]] = []
        # What each outstanding reply answers, as the transcript shows it, oldest first.
        self.unanswered: deque[Shown] = deque()
        # One cancel scope for the whole session, its deadline moved to each step's
        # timeout as the step begins: far cheaper than a scope per command, and a
        # timeout ends the session anyway.
        self.timer = trio.CancelScope()

    # -- the session ------------------------------------------------------

    async def run(self) -> None:
        recorder = self.recorder
        self.start = trio.current_time()
        recorder.latency(START_LAG, self.start - self.intended)
        recorder.started += 1
        recorder.in_flight += 1
        try:
            with self.timer:
                await self._talk()
            if self.timer.cancelled_caught:
                raise trio.TooSlowError
        except trio.Cancelled:
            self._fail(ErrorClass.CANCELLED, self.step, "cut off at the end of the run")
            self._finish()
            raise
        except (
            _ServerClosed,
            _ServerShutdown,
            _ClosedAfterHandshake,
            ProtocolError,
            OSError,
            trio.TooSlowError,
        ) as exc:
            self._connection_failed(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._connection_failed(exc)
        self._finish()
        if self.stream is not None:
            # A TLS close_notify to a peer already gone may fail: closed all the same.
            closing_errors = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(*closing_errors),
            ):
                await self.stream.aclose()

    def _arm(self, seconds: float) -> None:
        """The current step must be done within ``seconds`` from now.

        A step may get up to 1% more than its timeout (a second at most): moving
        the deadline only when it falls outside that margin spares re-arming the
        scope on every command, which costs more than the precision is worth.
        """
        target = trio.current_time() + seconds
        slack = min(1.0, seconds * 0.01)
        if not target <= self.timer.deadline <= target + slack:
            self.timer.deadline = target + slack

    async def _talk(self) -> None:
        settings = self.settings
        self._arm(settings.timeouts[Step.CONNECT])
        self.stream = await connect(settings.address)
        ready = trio.current_time()
        self.recorder.latency(Step.CONNECT, ready - self.start)
        if settings.tls_mode == "implicit":
            await self._handshake()
            ready = trio.current_time()
        self.step = Step.BANNER
        self.unanswered.append(None)
        self._arm(settings.timeouts[Step.BANNER])
        banner = (await self._read_reply()).reply
        self.unanswered.popleft()
        self._count(Step.BANNER, None, banner, self.arrival - ready)
        if banner.code // 100 == 2 and await self._open():
            for number, message in enumerate(self.plan.messages):
                await self._transaction(number, message)
                if self.deferred is None:
                    self.messages_done += 1
        await self._exchange(Step.QUIT, self.conn.quit())

    async def _open(self) -> bool:
        """Greeting, STARTTLS, the extension check and AUTH; False to quit at once."""
        settings = self.settings
        if not await self._greet():
            return False
        if settings.tls_mode == "starttls":
            if not self._has_extensions(("STARTTLS",)):
                return False
            if (await self._exchange(Step.STARTTLS, self.conn.starttls())).code != 220:
                return False
            await self._handshake()
            self.conn.tls_established()
            if not await self._greet(fallback=False):
                return False
        required = settings.required
        if settings.tls_mode != "none":
            required = tuple(word for word in required if word != "STARTTLS")
        if not self._has_extensions(required):
            return False
        return settings.auth_mechanism is None or await self._authenticate()

    async def _greet(self, *, fallback: bool = True) -> bool:
        name = self.plan.helo_name
        conn = self.conn
        greeting = self.settings.greeting
        if greeting == "HELO":
            return (await self._exchange(Step.HELO, conn.helo(name))).code // 100 == 2
        if greeting == "LHLO":
            return (await self._exchange(Step.LHLO, conn.lhlo(name))).code // 100 == 2
        if (await self._exchange(Step.EHLO, conn.ehlo(name))).code // 100 == 2:
            return True
        if not fallback or self.settings.required or self.settings.tls_mode == "starttls":
            return False
        if self.settings.auth_mechanism is not None:
            return False
        # Servers that do not know EHLO still take HELO (RFC 5321 section 3.2).
        return (await self._exchange(Step.HELO, conn.helo(name))).code // 100 == 2

    def _has_extensions(self, keywords: tuple[str, ...]) -> bool:
        capabilities = self.conn.capabilities
        missing = [word for word in keywords if not capabilities.has(word)]
        if not missing:
            return True
        step = Step.LHLO if self.settings.greeting == "LHLO" else Step.EHLO
        asked = " or ".join(
            f"{word} ({_ASKED_BY.get(word, 'session.require')})" for word in missing
        )
        detail = f"the server does not advertise {asked}, which the scenario asks for"
        self._fail(ErrorClass.PROTOCOL, step, detail)
        return False

    async def _handshake(self) -> None:
        settings = self.settings
        assert self.stream is not None and settings.ssl_context is not None
        self.step = Step.TLS
        tls = trio.SSLStream(
            self.stream,
            settings.ssl_context,
            server_hostname=settings.server_hostname,
            https_compatible=True,  # a server that closes without close_notify is just closed
        )
        self.stream = tls
        began = trio.current_time()
        self._arm(settings.timeouts[Step.TLS])
        await tls.do_handshake()
        self.recorder.latency(Step.TLS, trio.current_time() - began)
        self.fresh_tls = True

    async def _authenticate(self) -> bool:
        settings = self.settings
        conn = self.conn
        name = settings.auth_mechanism
        assert name is not None and self.stream is not None
        step = Step.LHLO if settings.greeting == "LHLO" else Step.EHLO
        if name not in conn.capabilities.auth:
            offered = " ".join(sorted(conn.capabilities.auth)) or "no AUTH at all"
            tls = " (before TLS)" if settings.tls_mode == "none" else ""
            self._fail(
                ErrorClass.PROTOCOL,
                step,
                f"the server does not offer AUTH {name}{tls}, which auth.mechanism asks for; "
                f"it offers {offered}",
            )
            return False
        mechanism = sasl.client_mechanism(name, settings.auth_username, settings.auth_secret)
        line = sasl.auth_command(mechanism)
        shown: Shown = sasl.redact_auth_line(line)
        self.step = Step.AUTH
        self.unanswered.append(shown)
        began = trio.current_time()
        self._arm(settings.timeouts[Step.AUTH])
        await self.stream.send_all(conn.auth(line))
        self.recorder.bytes_sent += len(line)
        for _ in range(MAX_AUTH_ROUNDS):
            reply = (await self._read_reply()).reply
            if reply.code != 334:
                break
            self.transcript.append((shown, reply))
            challenge = reply.lines[0].strip() if reply.lines else ""
            response = conn.auth_response(mechanism.respond(challenge))
            shown = self.unanswered[0] = sasl.redact_auth_line(response)
            await self.stream.send_all(response)
            self.recorder.bytes_sent += len(response)
        else:
            raise RemoteProtocolError(f"AUTH {name}: more than {MAX_AUTH_ROUNDS} challenges")
        self.unanswered.popleft()
        self._count(Step.AUTH, shown, reply, self.arrival - began)
        return reply.code in settings.success[Step.AUTH]

    # -- a transaction ----------------------------------------------------

    async def _transaction(self, number: int, message: MessagePlan) -> None:
        conn = self.conn
        recorder = self.recorder
        settings = self.settings
        pipelined = settings.pipelining and conn.capabilities.pipelining
        content = self.factory.message_bytes(self.plan, number)
        rset = message.rset_before and number > 0
        if not pipelined:
            if rset:
                await self._exchange(Step.RSET, conn.rset())
            if message.noop_before:
                await self._exchange(Step.NOOP, conn.noop())
            mail = await self._exchange(
                Step.MAIL, conn.mail(message.mail_from, self._mail(content, message))
            )
            if mail.code // 100 != 2:
                recorder.messages_rejected += 1
                return
            for recipient in message.recipients:
                reply = await self._exchange(Step.RCPT, conn.rcpt(recipient, self._rcpt(recipient)))
                self._count_recipient(reply)
            if conn.accepted_recipients == 0:
                recorder.messages_rejected += 1
                await self._exchange(Step.RSET, conn.rset())
                return
            if settings.chunking:
                await self._chunks(content, pipelined=False)
                return
            if (await self._exchange(Step.DATA, conn.data())).code != 354:
                recorder.messages_rejected += 1
                return
            await self._content(content)
            return

        group: list[tuple[Step, bytes, Shown]] = []
        if rset:
            group.append(_command(Step.RSET, conn.rset()))
        if message.noop_before:
            group.append(_command(Step.NOOP, conn.noop()))
            await self._send_group(group)
            group = []
        group.append(
            _command(Step.MAIL, conn.mail(message.mail_from, self._mail(content, message)))
        )
        for recipient in message.recipients:
            group.append(_command(Step.RCPT, conn.rcpt(recipient, self._rcpt(recipient))))
        chunked_together = settings.chunking and not conn.lmtp
        if chunked_together:
            group += self._chunk_commands(content)
        elif not settings.chunking:
            group.append(_command(Step.DATA, conn.data()))
        responses = await self._send_group(group)
        mail_ok = True
        data_reply: Reply | None = None
        finals: list[Reply] = []
        for response in responses:
            if response.step is Step.MAIL:
                mail_ok = response.reply.code // 100 == 2
            elif response.step is Step.RCPT:
                self._count_recipient(response.reply)
            elif response.step is Step.DATA:
                data_reply = response.reply
            elif response.step is Step.DATA_END:
                finals.append(response.reply)
        if chunked_together:
            self._message_done(finals)
            return
        if not mail_ok:
            recorder.messages_rejected += 1
            return
        if settings.chunking:  # LMTP: the last chunk waits for the RCPT replies
            if conn.accepted_recipients == 0:
                recorder.messages_rejected += 1
                await self._exchange(Step.RSET, conn.rset())
                return
            await self._chunks(content, pipelined=True)
            return
        if data_reply is None or data_reply.code != 354:
            recorder.messages_rejected += 1
            return
        if conn.accepted_recipients == 0:
            # A 354 after every RCPT was refused: the lone dot (RFC 2920 section 3.1).
            await self._send_group([(Step.DATA_END, conn.message(b""), 0)])
            recorder.messages_rejected += 1
            return
        if not conn.lmtp:
            line = conn.message(content)
            self.deferred = (Step.DATA_END, line, len(line))
            return
        await self._content(content)

    def _mail(self, content: bytes, message: MessagePlan) -> dict[str, str | None] | None:
        settings = self.settings
        capabilities = self.conn.capabilities
        params: dict[str, str | None] = {}
        if capabilities.size is not None:
            params["SIZE"] = str(len(content))
        if settings.body == "8bitmime" or (settings.smtputf8 and capabilities.eightbitmime):
            params["BODY"] = "8BITMIME"
        if settings.smtputf8:
            params["SMTPUTF8"] = None
        dsn = settings.dsn
        if dsn.ret is not None:
            params["RET"] = dsn.ret
        if message.envid is not None:
            params["ENVID"] = xtext(message.envid)
        return params or None

    def _rcpt(self, recipient: str) -> dict[str, str | None] | None:
        dsn = self.settings.dsn
        if dsn.is_empty:
            return None
        params: dict[str, str | None] = {}
        if dsn.notify:
            params["NOTIFY"] = ",".join(dsn.notify)
        if dsn.orcpt:
            params["ORCPT"] = orcpt(recipient)
        return params or None

    def _count_recipient(self, reply: Reply) -> None:
        if reply.code // 100 == 2:
            self.recorder.recipients_accepted += 1
        else:
            self.recorder.recipients_rejected += 1

    async def _content(self, content: bytes) -> None:
        line = self.conn.message(content)
        responses = await self._send_group([(Step.DATA_END, line, len(line))])
        self._message_done([response.reply for response in responses])

    def _chunk_commands(self, content: bytes) -> list[tuple[Step, bytes, Shown]]:
        size = self.settings.chunk_size
        commands = []
        for begin in range(0, len(content), size):
            chunk = content[begin : begin + size]
            last = begin + size >= len(content)
            line = self.conn.bdat(chunk, last)
            shown = (
                f"BDAT {len(chunk)}{' LAST' if last else ''} (and {len(chunk)} bytes of message)"
            )
            commands.append((Step.DATA_END if last else Step.BDAT, line, shown))
        return commands

    async def _chunks(self, content: bytes, *, pipelined: bool) -> None:
        """The message in BDAT chunks: in one write, or each chunk after the last one's reply."""
        if pipelined:
            responses = await self._send_group(self._chunk_commands(content))
            self._message_done([r.reply for r in responses if r.step is Step.DATA_END])
            return
        size = self.settings.chunk_size
        for begin in range(0, len(content), size):
            chunk = content[begin : begin + size]
            last = begin + size >= len(content)
            line = self.conn.bdat(chunk, last)
            shown = (
                f"BDAT {len(chunk)}{' LAST' if last else ''} (and {len(chunk)} bytes of message)"
            )
            responses = await self._send_group(
                [(Step.DATA_END if last else Step.BDAT, line, shown)]
            )
            if last:
                self._message_done([r.reply for r in responses])
            elif responses[0].reply.code // 100 != 2:
                self.recorder.messages_rejected += 1
                return

    def _message_done(self, finals: list[Reply]) -> None:
        """The end-of-data replies of one message (one each per recipient in LMTP)."""
        recorder = self.recorder
        if not finals:
            recorder.messages_rejected += 1
            return
        recorder.latency(MESSAGE_LATENCY, self.arrival - self.intended)
        success = self.settings.success[Step.DATA_END]
        if any(reply.code in success for reply in finals):
            recorder.messages_accepted += 1
        else:
            recorder.messages_rejected += 1

    # -- commands on the wire ---------------------------------------------

    async def _exchange(self, step: Step, line: bytes) -> Reply:
        """Sends one command, waits for its reply, times and counts it (the common case of
        ``_send_group``, kept lean: it runs for every command not pipelined)."""
        if self.deferred is not None:  # the earlier message's content goes first
            return (await self._send_group([(step, line, line)]))[0].reply
        stream = self.stream
        assert stream is not None
        self.step = step
        self.unanswered.append(line)
        self._arm(self.settings.timeouts[step])
        began = trio.current_time()
        await stream.send_all(line)
        self.recorder.bytes_sent += len(line)
        response = await self._read_reply()
        self.unanswered.popleft()
        self._count(response.step, line, response.reply, self.arrival - began)
        return response.reply

    async def _send_group(self, commands: list[tuple[Step, bytes, Shown]]) -> list[Response]:
        """Writes ``commands`` in one send and reads every reply they are owed, in order.

        Each reply is timed from the start of the write, a DATA end from its end
        (see the module docstring); in LMTP the end of data is owed one reply per
        accepted recipient, and all of them are read here.
        """
        stream = self.stream
        assert stream is not None
        settings = self.settings
        conn = self.conn
        deferred = self.deferred
        if deferred is not None:
            self.deferred = None
            commands = [deferred, *commands]
        first = commands[0][0]
        self.step = first
        for _, _, shown in commands:
            self.unanswered.append(shown)
        data = commands[0][1] if len(commands) == 1 else b"".join(c[1] for c in commands)
        began = trio.current_time()
        self._arm(settings.timeouts[first])
        await stream.send_all(data)
        written = trio.current_time()
        self.recorder.bytes_sent += len(data)
        # LMTP: the end of data is owed one reply per accepted recipient.
        for _ in range(conn.outstanding - len(self.unanswered)):
            self.unanswered.append("(the same message, for the next recipient)")
        responses = []
        while (step := conn.next_reply) is not None:
            self.step = step
            self._arm(settings.timeouts[step])
            response = await self._read_reply()
            shown = self.unanswered.popleft()
            since = written if response.step is Step.DATA_END else began
            self._count(response.step, shown, response.reply, self.arrival - since)
            responses.append(response)
        if deferred is not None:
            # The earlier message's end of data: its outcome is told here, not to the caller.
            self._message_done([responses.pop(0).reply])
            self.messages_done += 1
        return responses

    async def _read_reply(self) -> Response:
        conn = self.conn
        stream = self.stream
        assert stream is not None
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                self.arrival = trio.current_time()
                conn.receive_data(data)
            elif isinstance(event, Response):
                self.fresh_tls = False
                return event
            elif self.fresh_tls:
                raise _ClosedAfterHandshake(
                    f"the server closed the connection right after the TLS handshake, "
                    f"awaiting {self.step.label} (did it refuse the client certificate?)"
                )
            else:
                raise _ServerClosed(f"server closed the connection awaiting {self.step.label}")

    def _count(self, step: Step, sent: Shown, reply: Reply, seconds: float) -> None:
        recorder = self.recorder
        recorder.latency(step, seconds)
        recorder.reply(step, reply.code)
        self.transcript.append((sent, reply))
        if reply.code not in self.settings.success[step]:
            recorder.error(ErrorClass.REPLY, step)
            self._note(ErrorClass.REPLY, step, str(reply))
            if reply.code == 421:
                raise _ServerShutdown(str(reply))

    # -- outcomes ---------------------------------------------------------

    def _note(self, error: ErrorClass, step: Step, detail: str) -> None:
        if self.failure is None:
            self.failure = (error, step, detail)

    def _fail(self, error: ErrorClass, step: Step, detail: str) -> None:
        self.recorder.error(error, step)
        self._note(error, step, detail)

    def _connection_failed(self, exc: BaseException) -> None:
        if isinstance(exc, _ServerShutdown):
            return  # already counted as the reply it was
        for shown in self.unanswered:
            self.transcript.append((shown, None))
        self.unanswered.clear()
        if isinstance(exc, _ServerClosed):
            self._fail(ErrorClass.CLOSED, self.step, str(exc))
            return
        if isinstance(exc, _ClosedAfterHandshake):
            self._fail(ErrorClass.TLS, self.step, str(exc))
            return
        error = classify(exc)
        if error in (ErrorClass.RESET, ErrorClass.NETWORK) and (
            self.step is Step.TLS or self.fresh_tls
        ):
            # The peer gave up on the handshake, or reset the connection before the
            # first reply over it (a refused client certificate, told after the
            # client's side of a TLS 1.3 handshake: a reset or a close, by timing).
            error = ErrorClass.TLS
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, trio.TooSlowError):
            timeout = self.settings.timeouts[self.step]
            detail = f"no reply to {self.step.label} within {timeout:g}s"
            if self.step is Step.TLS:
                detail = f"TLS handshake not done within {timeout:g}s"
        elif error is ErrorClass.TLS:
            detail = failure_detail(exc)
        self._fail(error, self.step, detail)

    def _finish(self) -> None:
        recorder = self.recorder
        end = trio.current_time()
        recorder.latency(SESSION_LATENCY, end - self.intended)
        recorder.in_flight -= 1
        recorder.completed += 1
        # Messages the session never got to the end of were neither taken nor refused.
        recorder.messages_aborted += len(self.plan.messages) - self.messages_done
        if self.failure is None:
            return
        recorder.failed += 1
        error, step, detail = self.failure
        recorder.failure(
            FailureRecord(
                time=end - recorder.clock_start,
                session=self.plan.number,
                step=step.label,
                error=error.label,
                detail=detail,
                transcript=self._render_transcript(),
            )
        )

    def _render_transcript(self) -> tuple[TranscriptLine, ...]:
        lines = []
        for sent, reply in self.transcript:
            if isinstance(sent, bytes):
                text = sent.decode("utf-8", "replace").rstrip("\r\n")
            elif isinstance(sent, str):
                text = sent
            elif isinstance(sent, int):
                text = f"(message content, {sent} bytes)"
            else:
                text = "(connect)"
            lines.append(TranscriptLine(text, str(reply) if reply is not None else ""))
        return tuple(lines)


def _command(step: Step, line: bytes) -> tuple[Step, bytes, Shown]:
    return step, line, line


async def run_session(
    settings: SessionSettings,
    recorder: Recorder,
    factory: MessageFactory,
    plan: SessionPlan,
    intended: float,
) -> None:
    await Session(settings, recorder, factory, plan, intended).run()


__all__ = ["SessionSettings", "SessionSetupError", "preflight", "run_session"]
