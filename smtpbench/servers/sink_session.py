"""One sink connection: read, turn each event into a reply, let the faults have their say,
write every reply of one read with one send."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import trio

from smtpbench.protocol import sasl
from smtpbench.protocol.errors import RemoteProtocolError
from smtpbench.protocol.server import (
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    Event,
    LineTooLong,
    MessageReceived,
    NeedData,
    ServerConnection,
    State,
    UnrecognizedCommand,
    parse_bdat_argument,
    parse_path_argument,
)
from smtpbench.protocol.steps import Step
from smtpbench.servers.sink_pushback import LinkThrottle

if TYPE_CHECKING:
    from smtpbench.servers.sink import Sink

# trio's default read size. Bigger reads do not pay: CPython's recv() allocates the
# whole buffer each time, and above 128 KiB malloc maps and unmaps it every call.
RECEIVE_SIZE: Final = 65536
# Client mistakes (syntax and sequence errors, not injected replies) before the
# sink says 421 and hangs up, as real servers do, so a runaway client cannot spin.
MAX_ERRORS: Final = 50
_CLIENT_MISTAKES: Final = frozenset({500, 501, 503})
LAST_WORD_TIMEOUT: Final = 1.0  # seconds a 421 gets to go out before the connection closes

Answer = tuple[int, str | tuple[str, ...], str | None]
_LOGIN_USERNAME: Final = "VXNlcm5hbWU6"  # base64 "Username:"
_LOGIN_PASSWORD: Final = "UGFzc3dvcmQ6"  # base64 "Password:"
_OPEN_TRANSACTION: Final = frozenset({State.MAIL, State.RCPT, State.DATA, State.BDAT})


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message the sink accepted, kept when ``SinkConfig.keep_messages`` is on."""

    queue_id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes | None  # None only if it was too big to keep
    size: int
    via: Step  # Step.DATA or Step.BDAT
    tls: bool
    authenticated: bool
    mail_params: Mapping[str, str | None] = field(default_factory=dict)  # ESMTP params of MAIL
    rcpt_params: tuple[Mapping[str, str | None], ...] = ()  # of each accepted RCPT, in order


SINK_MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
# What an XOAUTH2 server sends in its 334 when the token is refused (RFC 7628 style).
_XOAUTH2_ERROR: Final = sasl.b64(b'{"status":"401","schemes":"bearer","scope":"smtp"}')


@functools.cache
def ehlo_lines(
    hostname: str, max_size: int, auth: bool, starttls: bool, off: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The EHLO reply's lines; extensions in ``off`` are left out."""
    lines = [
        f"SIZE {max_size}",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "DSN",
        "ENHANCEDSTATUSCODES",
    ]
    if auth:
        lines.append("AUTH " + " ".join(SINK_MECHANISMS))
    if starttls:
        lines.append("STARTTLS")
    return (hostname, *(line for line in lines if line.split(" ", 1)[0] not in off))


# ESMTP parameters of MAIL and RCPT, and the extension each belongs to (RFC 1870, 6152,
# 6531, 3461).
_PARAMETER_EXTENSIONS: Final = {
    "SIZE": "SIZE",
    "BODY": "8BITMIME",
    "SMTPUTF8": "SMTPUTF8",
    "RET": "DSN",
    "ENVID": "DSN",
    "NOTIFY": "DSN",
    "ORCPT": "DSN",
}


def _peer_address(stream: trio.abc.Stream) -> str:
    """The client's IP address, what per-client limits count by."""
    try:
        return str(stream.socket.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError, IndexError):
        return "unknown"


def _is_base64(text: str | bytes) -> bool:
    if text in ("=", b"="):  # RFC 4954: an empty initial response
        return True
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _valid_notify(value: str) -> bool:
    words = value.upper().split(",")
    if words == ["NEVER"]:
        return True
    return len(set(words)) == len(words) and set(words) <= {"SUCCESS", "FAILURE", "DELAY"}


class Session:
    """The sink's side of one connection. ``run()`` returns when the session is over;
    the caller closes ``stream`` (which is the TLS stream after STARTTLS)."""

    __slots__ = (
        "address",
        "auth",
        "auth_user",
        "challenge",
        "client",
        "conn",
        "cut_data",
        "errors",
        "failures",
        "mail_from",
        "mail_params",
        "next_auth",
        "out",
        "params",
        "queue_id",
        "rcpt_params",
        "recipients",
        "sink",
        "stream",
        "taken",
        "throttle",
    )

    def __init__(self, sink: Sink, stream: trio.abc.Stream, client: str | None = None) -> None:
        """``client``: the address a PROXY protocol header named, when the sink takes one."""
        self.sink = sink
        self.stream = stream
        config = sink.config
        pushback = config.pushback
        self.conn = ServerConnection(
            keep_data=config.keep_messages
            or config.on_message is not None
            or pushback.maildir is not None,
            max_data_size=config.max_message_size,
        )
        self.out = bytearray()
        self.mail_from = ""
        self.recipients: list[str] = []  # kept with keep_messages only
        self.taken = 0  # recipients the transaction under way has (RCPT TO answered 2xx)
        self.address = ""  # parsed from the MAIL or RCPT being answered
        self.queue_id = ""
        self.auth: tuple[str, int] | None = None  # SASL mechanism and stage
        self.next_auth: tuple[str, int] | None = None
        self.params: dict[str, str | None] = {}  # of the MAIL or RCPT being answered
        self.mail_params: dict[str, str | None] = {}
        self.rcpt_params: list[dict[str, str | None]] = []
        self.auth_user = ""  # LOGIN: the user name, until the password comes
        self.challenge = b""  # CRAM-MD5: the challenge sent
        self.cut_data = False  # a "DATA end" disconnect was drawn for this message
        self.errors = 0
        self.failures = 0  # error replies (4xx, 5xx) sent: what the tarpit counts
        # The client's address, what per-client limits count by (only asked for by them).
        self.client = "" if sink.pushback is None else client or _peer_address(stream)
        self.throttle = None if pushback.throttle is None else LinkThrottle(pushback.throttle)

    # -- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        if not await self._greet():
            return
        conn = self.conn
        stats = self.sink.stats
        config = self.sink.config
        throttle = self.throttle
        size = RECEIVE_SIZE if throttle is None else throttle.read_size(RECEIVE_SIZE)
        while True:
            timeout = config.command_timeout if conn.mid_command else config.idle_timeout
            with trio.move_on_after(timeout) as waited:
                data = await self.stream.receive_some(size)
            if waited.cancelled_caught:
                await self._timed_out()
                return
            stats.bytes_received += len(data)
            if throttle is not None and data:  # a slow link: what was read takes its time
                await trio.sleep(throttle.wait(len(data), trio.current_time()))
            if self.cut_data and data:
                return  # the "DATA end" disconnect: drop the client mid-message
            conn.receive_data(data)
            go_on = await self._answer_all()
            await self._flush()
            if not go_on:
                return

    async def start_implicit_tls(self) -> bool:
        """TLS from the first byte (port 465 style): the handshake before the banner."""
        if not await self._start_tls():
            return False
        self.conn.tls = True
        return True

    async def refuse_busy(self) -> None:
        """Over the connection limit: 421 in place of the banner (RFC 5321 section 3.8)."""
        await self.refuse(
            421, f"{self.sink.config.hostname} Too many connections, try later", "4.7.0"
        )

    async def refuse(self, code: int, text: str, enhanced: str) -> None:
        """A reply in place of the banner; the caller closes the connection."""
        self._emit(code, text, enhanced)
        with trio.move_on_after(LAST_WORD_TIMEOUT):
            await self._flush()

    async def _timed_out(self) -> None:
        """The client said nothing for too long: 421, then the connection closes."""
        self.sink.stats.timeouts += 1
        self._emit(421, f"{self.sink.config.hostname} Error: timeout exceeded", "4.4.2")
        with trio.move_on_after(LAST_WORD_TIMEOUT):
            await self._flush()

    async def _flush(self) -> None:
        if self.out:
            out, self.out = self.out, bytearray()
            with trio.move_on_after(self.sink.config.command_timeout) as sent:
                await self.stream.send_all(out)
            if sent.cancelled_caught:  # the client stopped reading
                raise trio.BrokenResourceError("the client did not read the replies in time")

    def _emit(self, code: int, text: str | tuple[str, ...], enhanced: str | None) -> None:
        if not self.sink.enhanced_codes:
            enhanced = None
        self.out += self.conn.reply(code, text, enhanced)
        self.sink.stats.replies_by_code[code] += 1

    def _emit_each(self, answer: Answer, recipients: int) -> None:
        """LMTP: the same answer for each accepted recipient (RFC 2033 section 4.2)."""
        if not self.sink.enhanced_codes:
            answer = (answer[0], answer[1], None)
        self.out += self.conn.reply_each([answer] * recipients)
        self.sink.stats.replies_by_code[answer[0]] += recipients

    async def _greet(self) -> bool:
        sink = self.sink
        hostname = sink.config.hostname
        if sink.shutting_down:
            sink.stats.faults_injected["shutdown"] += 1
            self._emit(421, f"{hostname} Service shutting down", "4.3.2")
            await self._flush()
            return False
        protocol = "LMTP" if sink.config.lmtp else "ESMTP"
        answer: Answer = (220, f"{hostname} {protocol} smtpbench sink", None)
        garbage = None
        if Step.CONNECT in sink.faults.steps:
            injected = await self._inject(Step.CONNECT, answer)
            if injected is None:
                return False  # accept, then close at once
            answer, garbage = injected
        if garbage is not None:
            self.conn.reply(*answer)  # keeps the state machine in step
            self.out += garbage
        else:
            self._emit(*answer)
        await self._flush()
        return self.conn.state is not State.CLOSED

    async def _answer_all(self) -> bool:
        """Answer every event the buffer holds; False when the session is over."""
        conn = self.conn
        sink = self.sink
        faults = sink.faults
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                return True
            if isinstance(event, ConnectionClosed):
                return False
            if sink.shutting_down:
                sink.stats.faults_injected["shutdown"] += 1
                self._emit(421, f"{sink.config.hostname} Service shutting down", "4.3.2")
                return False
            if self.cut_data and isinstance(event, MessageReceived):
                return False  # the whole message came in one read: still no answer
            step = conn.pending_step
            answer = original = self._decide(event)
            if sink.pushback is not None and answer[0] < 400:
                answer = self._push_back(step, answer)
            if sink.capacity is not None and isinstance(event, MessageReceived):
                await self._flush()  # the replies before this one are not held up
                await trio.sleep(sink.capacity.admit(trio.current_time()))
            garbage = None
            if step is not None and step in faults.steps:
                may_disconnect = not (isinstance(event, MessageReceived) and event.via is Step.DATA)
                injected = await self._inject(step, answer, may_disconnect=may_disconnect)
                if injected is None:
                    return False
                answer, garbage = injected
            if (
                sink.maildir is not None
                and isinstance(event, MessageReceived)
                and answer[0] == 250
                and event.data is not None
            ):
                answer = await self._write_maildir(event.data, answer)
            if sink.pushback is not None:
                hold = sink.pushback.tarpit(self.failures)
                if hold > 0:
                    await self._flush()  # the replies before this one are not held up
                    await trio.sleep(hold)
            code = answer[0]
            if code >= 400:
                self.failures += 1
            if garbage is not None:
                conn.reply(*answer)  # keeps the state machine in step
                self.out += garbage
                if step is Step.STARTTLS:
                    return False  # no handshake can follow a garbled go-ahead
            elif isinstance(event, MessageReceived) and sink.config.lmtp:
                self._emit_each(answer, max(1, conn.recipients))
            else:
                self._emit(*answer)
            self._account(event, step, code, injected=answer is not original or garbage is not None)
            if conn.state is State.CLOSED:
                return False
            if step is Step.DATA and code == 354 and Step.DATA_END in faults.plan.disconnects:
                # Drawn now so that the connection can drop in the middle of the content.
                self.cut_data = faults.disconnect(Step.DATA_END)
            if step is Step.STARTTLS and code == 220 and not await self._start_tls():
                return False

    def _push_back(self, step: Step | None, answer: Answer) -> Answer:
        """A positive ``answer`` to MAIL or RCPT, or the policy's deferral instead."""
        policy = self.sink.pushback
        assert policy is not None
        deferral = None
        if step is Step.MAIL:
            deferral = policy.mail(self.client)
        elif step is Step.RCPT:
            deferral = policy.recipient(self.client, self.mail_from, self.address)
        if deferral is None:
            return answer
        return deferral.code, deferral.text, deferral.enhanced

    async def _write_maildir(self, data: bytes, answer: Answer) -> Answer:
        """Writes an accepted message to the maildir (up to its limit) before the 250 goes
        out; a message that cannot be written is not taken (451)."""
        sink = self.sink
        maildir = sink.maildir
        assert maildir is not None
        if not maildir.reserve():
            return answer
        await self._flush()  # the replies before this one are not held up
        try:
            await trio.to_thread.run_sync(maildir.write, data, limiter=sink.maildir_writes)
        except OSError as exc:
            return 451, f"Error: cannot write the message: {exc.strerror or exc}", "4.3.0"
        return answer

    async def _inject(
        self, step: Step, answer: Answer, *, may_disconnect: bool = True
    ) -> tuple[Answer, bytes | None] | None:
        """The answer after the step's faults: None to hang up, else (answer, garbage)."""
        faults = self.sink.faults
        pause = faults.pause(step)
        if pause > 0:
            await self._flush()  # the replies before this one are not held up
            await trio.sleep(pause)
        if may_disconnect and faults.disconnect(step):
            return None
        garbage = faults.garbage(step)
        if garbage is not None:
            return answer, garbage
        fault = faults.reply(step)
        if fault is not None:
            enhanced, text = fault.describe(step)
            return (fault.code, text, enhanced), None
        return answer, None

    async def _start_tls(self) -> bool:
        await self._flush()  # the 220 goes out in clear text
        stats = self.sink.stats
        assert self.sink.ssl_context is not None
        tls = trio.SSLStream(self.stream, self.sink.ssl_context, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            stats.tls_failures += 1
            return False
        self.stream = tls
        stats.tls_sessions += 1
        return True

    # -- bookkeeping after a reply went out ---------------------------------------

    def _account(self, event: Event, step: Step | None, code: int, *, injected: bool) -> None:
        stats = self.sink.stats
        if step is not None:
            stats.commands[step.label] += 1
        elif isinstance(event, LineTooLong):
            stats.commands["line too long"] += 1
        else:
            stats.commands["unrecognized"] += 1
        if code in _CLIENT_MISTAKES and not injected:
            self.errors += 1
        positive = code < 400
        if step is Step.MAIL:
            if positive:
                self.mail_from = self.address
                self.mail_params = self.params
                self.recipients = []
                self.rcpt_params = []
                self.taken = 0
        elif step is Step.RCPT:
            if positive:
                stats.recipients_accepted += 1
                self.taken += 1
                if self.sink.config.keep_messages:
                    self.recipients.append(self.address)
                    self.rcpt_params.append(self.params)
        elif isinstance(event, MessageReceived):
            if code == 250:
                stats.messages_accepted += 1
                stats.message_bytes += event.size
                if self.sink.config.keep_messages:
                    self._keep(event)
                if self.sink.config.on_message is not None:
                    self.sink.config.on_message(event.data, event.size, self.taken)
            else:
                stats.messages_rejected += 1
        elif step is Step.AUTH:
            self.auth = self.next_auth if code == 334 else None
        if self.conn.state not in _OPEN_TRANSACTION:
            self.mail_from = ""
            self.taken = 0
            self.recipients = []
            self.mail_params = {}
            self.rcpt_params = []

    def _keep(self, event: MessageReceived) -> None:
        conn = self.conn
        self.sink.messages.append(
            ReceivedMessage(
                queue_id=self.queue_id,
                mail_from=self.mail_from,
                recipients=tuple(self.recipients),
                data=event.data,
                size=event.size,
                via=event.via,
                tls=conn.tls,
                authenticated=conn.authenticated,
                mail_params=MappingProxyType(self.mail_params),
                rcpt_params=tuple(MappingProxyType(p) for p in self.rcpt_params),
            )
        )

    # -- the replies ------------------------------------------------------------

    def _decide(self, event: Event) -> Answer:
        if self.errors >= MAX_ERRORS:
            return 421, f"{self.sink.config.hostname} Too many errors", "4.7.0"
        if isinstance(event, CommandReceived):
            if event.step is Step.BDAT and not self.sink.config.pushback.has("CHUNKING"):
                return 502, "BDAT not supported", "5.5.1"  # in any state: not implemented
            if not event.allowed:
                return self._bad_sequence(event.step)
            return _HANDLERS[event.step](self, event)
        if isinstance(event, MessageReceived):
            return self._message(event)
        if isinstance(event, AuthResponse):
            return self._auth_response(event)
        if isinstance(event, LineTooLong):
            return 500, "Line too long", "5.5.6"
        assert isinstance(event, UnrecognizedCommand)
        if event.verb == "HELP":
            return 214, "smtpbench sink: it accepts mail and discards it", "2.0.0"
        return 500, "Command unrecognized", "5.5.1"

    def _bad_sequence(self, step: Step) -> Answer:
        conn = self.conn
        state = conn.state
        if state is State.CONNECTED and step not in (Step.STARTTLS, Step.AUTH):
            why = "send HELO/EHLO first"
        elif step is Step.MAIL:
            why = "nested MAIL command"
        elif step is Step.RCPT:
            why = "need MAIL command"
        elif step in (Step.DATA, Step.BDAT):
            why = "DATA and BDAT do not mix" if state is State.BDAT else "need RCPT command"
        elif step is Step.STARTTLS:
            why = "TLS already active" if conn.tls else "send EHLO first"
        elif step is Step.AUTH:
            why = "already authenticated" if conn.authenticated else "send EHLO first"
            if state in _OPEN_TRANSACTION:
                why = "MAIL transaction in progress"
        else:
            why = "bad sequence of commands"
        return 503, f"Error: {why}", "5.5.1"

    def _helo(self, event: CommandReceived) -> Answer:
        if self.sink.config.lmtp:
            return 500, f"This is an LMTP server: use LHLO, not {event.verb}", "5.5.1"
        if not event.argument:
            return 501, f"Syntax: {event.verb} hostname", "5.5.4"
        return 250, self.sink.config.hostname, None

    def _ehlo(self, event: CommandReceived) -> Answer:
        if self.sink.config.lmtp and event.verb != "LHLO":
            return 500, "This is an LMTP server: use LHLO, not EHLO", "5.5.1"
        if not event.argument:
            return 501, f"Syntax: {event.verb} hostname", "5.5.4"
        config = self.sink.config
        starttls = config.offers_tls and not self.conn.tls
        off = config.pushback.no_extension
        return (
            250,
            ehlo_lines(config.hostname, config.max_message_size, config.auth, starttls, off),
            None,
        )

    def _lhlo(self, event: CommandReceived) -> Answer:
        if self.sink.config.lmtp:
            return self._ehlo(event)
        return 502, "LMTP is not supported: this is an SMTP sink", "5.5.1"

    def _starttls(self, event: CommandReceived) -> Answer:
        if self.sink.ssl_context is None or not self.sink.config.pushback.has("STARTTLS"):
            return 502, "STARTTLS not offered", "5.5.1"
        if event.argument:
            return 501, "Syntax: STARTTLS", "5.5.4"
        return 220, "Ready to start TLS", "2.0.0"

    def _auth(self, event: CommandReceived) -> Answer:
        if not self.sink.config.auth or not self.sink.config.pushback.has("AUTH"):
            return 502, "Authentication not enabled", "5.5.1"
        mechanism, _, initial = event.argument.partition(" ")
        mechanism = mechanism.upper()
        initial = initial.strip()
        if mechanism not in SINK_MECHANISMS:
            return 504, "Unrecognized authentication type", "5.5.4"
        if initial and not _is_base64(initial):
            return 501, "Cannot decode the response", "5.5.2"
        if mechanism == "PLAIN":
            if initial:
                return self._plain(initial)
            self.next_auth = ("PLAIN", 1)
            return 334, "", None
        if mechanism == "LOGIN":
            if initial:
                self.auth_user = sasl.unb64(initial).decode("utf-8", "replace")
                self.next_auth = ("LOGIN", 2)
                return 334, _LOGIN_PASSWORD, None
            self.next_auth = ("LOGIN", 1)
            return 334, _LOGIN_USERNAME, None
        if mechanism == "CRAM-MD5":
            if initial:
                return 501, "CRAM-MD5 takes no initial response", "5.5.2"
            self.challenge = sasl.cram_md5_challenge(self.sink.config.hostname)
            self.next_auth = ("CRAM-MD5", 1)
            return 334, sasl.b64(self.challenge), None
        if initial:  # XOAUTH2
            return self._xoauth2(initial)
        self.next_auth = ("XOAUTH2", 1)
        return 334, "", None

    def _auth_response(self, event: AuthResponse) -> Answer:
        line = event.line.strip()
        if line == b"*":
            return 501, "Authentication cancelled", "5.0.0"
        stage = self.auth
        if stage == ("XOAUTH2", 2):  # the client read the error; any line ends it
            return 535, "Authentication credentials invalid", "5.7.8"
        if not _is_base64(line):
            return 501, "Cannot decode the response", "5.5.2"
        try:
            if stage == ("LOGIN", 1):
                self.auth_user = sasl.unb64(line).decode("utf-8", "replace")
                self.next_auth = ("LOGIN", 2)
                return 334, _LOGIN_PASSWORD, None
            if stage == ("LOGIN", 2):
                password = sasl.unb64(line).decode("utf-8", "replace")
                return self._verdict(self.sink.config_authenticates(self.auth_user, password))
            if stage == ("CRAM-MD5", 1):
                user, digest = sasl.cram_md5_user(line)
                password = self.sink.config.password_of(user)
                if not self.sink.config.credentials:
                    return self._verdict(True)
                ok = password is not None and sasl.cram_md5_verify(self.challenge, password, digest)
                return self._verdict(ok)
            if stage == ("XOAUTH2", 1):
                return self._xoauth2(line)
            return self._plain(line)
        except RemoteProtocolError:
            return 501, "Cannot decode the response", "5.5.2"

    def _plain(self, response: str | bytes) -> Answer:
        try:
            _, user, password = sasl.decode_plain(response)
        except RemoteProtocolError:
            return 501, "Cannot decode the response", "5.5.2"
        return self._verdict(self.sink.config_authenticates(user, password))

    def _xoauth2(self, response: str | bytes) -> Answer:
        try:
            user, token = sasl.decode_xoauth2(response)
        except RemoteProtocolError:
            return 501, "Cannot decode the response", "5.5.2"
        if self.sink.config_authenticates(user, token):
            return 235, "Authentication successful", "2.7.0"
        self.next_auth = ("XOAUTH2", 2)
        return 334, _XOAUTH2_ERROR, None

    @staticmethod
    def _verdict(ok: bool) -> Answer:
        if ok:
            return 235, "Authentication successful", "2.7.0"
        return 535, "Authentication credentials invalid", "5.7.8"

    def _mail(self, event: CommandReceived) -> Answer:
        parsed = parse_path_argument(event.argument, "FROM")
        if parsed is None:
            return 501, "Syntax: MAIL FROM:<address>", "5.5.4"
        self.address, params = parsed
        self.params = params
        unsupported = self._unsupported(params)
        if unsupported is not None:
            return unsupported
        if not self.address.isascii() and "SMTPUTF8" not in params:
            return 553, "Must declare SMTPUTF8 to send unicode address", "5.6.7"
        body = params.get("BODY")
        if body is not None and body.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
            return 501, "Syntax: BODY=7BIT or BODY=8BITMIME", "5.5.4"
        ret = params.get("RET")
        if ret is not None and ret.upper() not in ("FULL", "HDRS"):
            return 501, "Syntax: RET=FULL or RET=HDRS", "5.5.4"
        size = params.get("SIZE")
        if size is not None:
            if not size.isdigit():
                return 501, "Syntax: SIZE=<octets>", "5.5.4"
            if int(size) > self.sink.config.max_message_size:
                return 552, "Message size exceeds fixed maximum message size", "5.3.4"
        return 250, "Sender OK", "2.1.0"

    def _rcpt(self, event: CommandReceived) -> Answer:
        parsed = parse_path_argument(event.argument, "TO")
        if parsed is None:
            return 501, "Syntax: RCPT TO:<address>", "5.5.4"
        self.address, self.params = parsed
        unsupported = self._unsupported(self.params)
        if unsupported is not None:
            return unsupported
        if not self.address:
            return 501, "Bad recipient address syntax", "5.1.3"
        if not self.address.isascii() and "SMTPUTF8" not in self.mail_params:
            return 553, "Must declare SMTPUTF8 to send unicode address", "5.6.7"
        notify = self.params.get("NOTIFY")
        if notify is not None and not _valid_notify(notify):
            return 501, "Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY", "5.5.4"
        if not self.sink.config.accepts_recipient(self.address):
            return 554, f"<{self.address}>: Relay access denied", "5.7.1"
        return 250, "Recipient OK", "2.1.5"

    def _unsupported(self, params: Mapping[str, str | None]) -> Answer | None:
        """555 for a parameter of an extension switched off (RFC 5321 section 4.2.3)."""
        off = self.sink.extensions_off
        if not off:
            return None
        for name in params:
            if _PARAMETER_EXTENSIONS.get(name) in off:
                return 555, f"Unsupported option: {name}", "5.5.4"
        return None

    def _data(self, event: CommandReceived) -> Answer:
        if event.argument:
            return 501, "Syntax: DATA", "5.5.4"
        return 354, "End data with <CR><LF>.<CR><LF>", None

    def _bdat(self, event: CommandReceived) -> Answer:
        chunk = parse_bdat_argument(event.argument)
        if chunk is None:
            return 501, "Syntax: BDAT octets [LAST]", "5.5.4"
        if self.conn.message_size > self.sink.config.max_message_size:
            return 552, "Message size exceeds fixed maximum message size", "5.3.4"
        return 250, f"{chunk[0]} octets received", "2.0.0"

    def _message(self, event: MessageReceived) -> Answer:
        if event.via is Step.BDAT and not self.sink.config.pushback.has("CHUNKING"):
            return 502, "BDAT not supported", "5.5.1"  # a lone BDAT n LAST comes here
        if event.size > self.sink.config.max_message_size:
            return 552, "Message size exceeds fixed maximum message size", "5.3.4"
        self.queue_id = self.sink.next_queue_id()
        return 250, f"Ok: queued as {self.queue_id}", "2.0.0"

    def _ok(self, event: CommandReceived) -> Answer:
        return 250, "Ok", "2.0.0"

    def _vrfy(self, event: CommandReceived) -> Answer:
        return 252, "Cannot VRFY user, but will accept message", "2.5.0"

    def _expn(self, event: CommandReceived) -> Answer:
        return 502, "EXPN not supported", "5.5.1"

    def _quit(self, event: CommandReceived) -> Answer:
        return 221, "Bye", "2.0.0"


_HANDLERS: Final[dict[Step, Callable[[Session, CommandReceived], Answer]]] = {
    Step.HELO: Session._helo,
    Step.EHLO: Session._ehlo,
    Step.LHLO: Session._lhlo,
    Step.STARTTLS: Session._starttls,
    Step.AUTH: Session._auth,
    Step.MAIL: Session._mail,
    Step.RCPT: Session._rcpt,
    Step.DATA: Session._data,
    Step.BDAT: Session._bdat,
    Step.RSET: Session._ok,
    Step.NOOP: Session._ok,
    Step.VRFY: Session._vrfy,
    Step.EXPN: Session._expn,
    Step.QUIT: Session._quit,
}
