"""The shell's connection: what the user types goes out through the one SMTP client
state machine (``ClientConnection.send_raw``, lines as typed), what the server says
comes back as its replies, matched to the commands they answer and timed.

- One task reads the server for as long as the connection lasts; sending never
  waits for a reply, so a silent server never holds the screen: ``overdue`` says
  which reply is late, once, and the reply is still taken if it comes.
- ``STARTTLS`` answered 220 upgrades this connection: the TLS channel of the
  engine (``ssl.SSLObject`` over memory buffers) with the client context of
  ``engine/tls.py``; the certificate is shown as the probe shows it.
- AUTH helpers: the mechanisms of ``protocol/sasl.py`` answer the challenges;
  the transcript shows only ``AUTH NAME (credentials hidden)``.
- Scripts: a few steps sent one after the other, each once the reply before it
  was positive (the composer's MAIL, RCPT, DATA and content).
- Every byte either side said in clear is fed to a recording ``Conversation``
  (the recording proxy's follower), so ``recording()`` is the session as the proxy
  would have written it.

Lax mode sends what was typed with ``\\r``, ``\\n``, ``\\t``, ``\\xHH`` and ``\\\\``
read as the bytes they name, ended by a bare LF, outside every check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from smtpbench import __version__
from smtpbench.engine.tls import failure_detail
from smtpbench.engine.tls_channel import TlsChannel
from smtpbench.protocol.capabilities import NO_CAPABILITIES, Capabilities
from smtpbench.protocol.client import NEED_DATA, ClientConnection, ConnectionClosed, State
from smtpbench.protocol.errors import LocalProtocolError, RemoteProtocolError
from smtpbench.protocol.message import dot_stuff
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.sasl import Mechanism, auth_command, client_mechanism, redact_auth_line
from smtpbench.protocol.steps import Step
from smtpbench.recording import Conversation, Recording, RecordingHeader

EntryKind = Literal["sent", "reply", "note", "error", "certificate"]
REPLY_TIMEOUT = 30.0  # seconds before a missing reply is called late
CONNECT_TIMEOUT = 15.0
HANDSHAKE_TIMEOUT = 30.0
_READ = 65536

# The verbs the shell times as steps; any other verb is owed its reply as NOOP.
_VERB_STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step.HELO,
        Step.EHLO,
        Step.LHLO,
        Step.STARTTLS,
        Step.AUTH,
        Step.MAIL,
        Step.RCPT,
        Step.DATA,
        Step.BDAT,
        Step.RSET,
        Step.NOOP,
        Step.VRFY,
        Step.EXPN,
        Step.QUIT,
    )
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[rnt\\])")
_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}


def lax_bytes(text: str) -> bytes:
    """What lax mode sends for a typed line: escapes read as bytes, a bare LF at the end."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos : match.start()].encode("utf-8")
        code = match.group(1)
        out += bytes([int(code[1:], 16)]) if code[0] == "x" else _ESCAPES[code]
        pos = match.end()
    out += text[pos:].encode("utf-8")
    return bytes(out) + b"\n"


def step_of_line(line: bytes) -> Step:
    """The step a typed command line is owed its reply as (an unknown verb: NOOP)."""
    words = line.split(None, 1)
    verb = words[0].decode("ascii", "replace").upper() if words else ""
    return _VERB_STEPS.get(verb, Step.NOOP)


def is_auth_line(line: bytes) -> bool:
    words = line.split(None, 1)
    return bool(words) and words[0].upper() == b"AUTH"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the transcript. ``at`` is seconds since the connection began;
    ``seconds`` the time from sending the command to its complete reply."""

    kind: EntryKind
    at: float
    text: str = ""
    reply: Reply | None = None
    step: Step | None = None
    seconds: float | None = None
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ShellSettings:
    host: str
    port: int
    tls_context: ssl.SSLContext
    server_hostname: str | None
    reply_timeout: float = REPLY_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT


@dataclass(slots=True)
class _Owed:
    step: Step
    sent: float
    shown: str
    late: bool = False


@dataclass(slots=True)
class _Script:
    """Steps sent one after another while the replies are positive."""

    steps: deque[tuple[Step, bytes, str]] = field(default_factory=deque)
    what: str = ""


class ShellConnection:
    """One live SMTP connection for the shell. ``listener`` gets every transcript entry;
    ``changed`` is called when the state, the capabilities or TLS change."""

    def __init__(
        self,
        settings: ShellSettings,
        listener: Callable[[Entry], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.changed = changed
        self.clock = clock
        self.wall_clock = wall_clock
        self.conn = ClientConnection()
        self.began = 0.0
        self.epoch = 0.0
        self.tls: TlsChannel | None = None
        self.tls_version = ""
        self.closed = False
        self.connected = False
        self.capabilities: Capabilities = NO_CAPABILITIES
        self.conversation: Conversation | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._owed: deque[_Owed] = deque()
        self._mechanism: Mechanism | None = None
        # What the session last logged in with (user name, secret), by /auth or typed:
        # never shown nor saved, only handed to /repeat's replay, whose recording leaves
        # them out. Taken once the server answers 235.
        self.login: tuple[str, str] | None = None
        self._typed = _TypedLogin()
        self._script: _Script | None = None
        self._handshaking = False
        self._send_lock = asyncio.Lock()

    # -- what the screen asks -------------------------------------------------------

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def in_content(self) -> bool:
        """A 354 came: typed lines are message content until a lone dot."""
        return self.conn.state is State.CONTENT

    @property
    def in_sasl(self) -> bool:
        """A 334 came and no helper answers it: the next typed line is a SASL response."""
        return self.conn.state is State.AUTH and self._mechanism is None

    @property
    def busy(self) -> bool:
        """A TLS handshake or a script is under way: typed lines wait."""
        return self._handshaking or self._script is not None

    @property
    def target(self) -> str:
        host = self.settings.host
        return f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"

    def _now(self) -> float:
        return self.clock() - self.began

    def _emit(self, kind: EntryKind, text: str = "", **fields: Any) -> None:
        self.listener(Entry(kind, self._now(), text, **fields))

    # -- the connection -------------------------------------------------------------

    async def run(self) -> None:
        """Connects, then reads the server until it closes or the connection is closed;
        never raises for what the network or the server does."""
        self.began = self.clock()
        self.epoch = self.wall_clock()
        self.conversation = Conversation(1, self.began, "shell", redact_auth=True)
        self._owed.append(_Owed(Step.BANNER, self.began, "banner"))
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.settings.host, self.settings.port),
                self.settings.connect_timeout,
            )
        except TimeoutError:
            self._fail(f"no connection to {self.target} after {self.settings.connect_timeout:g} s")
            return
        except OSError as err:
            self._fail(f"cannot connect to {self.target}: {err.strerror or err}")
            return
        self.connected = True
        self._emit("note", "connected")
        self.changed()
        try:
            await self._read_loop()
        except (OSError, ConnectionError) as err:
            self._fail(f"connection lost: {err}")
        except Exception as err:  # whatever it is, the screen stays and says it
            self._fail(f"the connection ended on an error: {type(err).__name__}: {err}")
        finally:
            await self.close()

    def _fail(self, why: str) -> None:
        self._emit("error", why)
        self.closed = True
        self._owed.clear()
        self.changed()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        while not self.closed:
            data = await self._reader.read(_READ)
            if self.tls is not None:
                self.tls.received(data)
                plain = self.tls.read()
                await self._send_bytes(self.tls.pending_output())
                if plain is None:
                    continue
                data = plain
            if self.conversation is not None:
                if data:
                    self.conversation.server_data(self.clock(), data)
                else:
                    self.conversation.server_closed(self.clock())
            if not await self._take(data):
                return

    async def _take(self, data: bytes) -> bool:
        """Replies out of ``data``; False once the connection has ended."""
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as err:
                if str(err).startswith("reply with no command outstanding"):
                    # Lax lines can earn replies nobody could foresee: shown, not fatal.
                    self._emit("error", f"the server replied to nothing owed one: {err}")
                    continue
                # What is buffered cannot be trusted to line up with a reply any more.
                self._emit("error", f"not an SMTP reply: {err}; the connection is closed")
                self.closed = True
                self._owed.clear()
                self.changed()
                return False
            if event is NEED_DATA:
                return True
            if isinstance(event, ConnectionClosed):
                owed = f" (the reply to {event.pending.label} never came)" if event.pending else ""
                self._emit("note", f"the server closed the connection{owed}")
                self.closed = True
                self._owed.clear()
                self.changed()
                return False
            step, reply = event.step, event.reply
            arrived = self.clock()
            owed = self._owed.popleft() if self._owed else None
            seconds = arrived - owed.sent if owed is not None else None
            self.listener(Entry("reply", arrived - self.began, "", reply, step, seconds))
            if step in (Step.EHLO, Step.LHLO) and reply.is_positive:
                self.capabilities = self.conn.capabilities
            await self._after_reply(step, reply)
            self.changed()

    async def _after_reply(self, step: Step, reply: Reply) -> None:
        if step is Step.STARTTLS and reply.code == 220:
            await self._handshake()
            return
        if step is Step.AUTH:
            mechanism = self._mechanism
            if reply.code == 334 and mechanism is not None:
                try:
                    answer = mechanism.respond(reply.lines[0] if reply.lines else "")
                except (RemoteProtocolError, LocalProtocolError) as err:
                    self._emit("error", f"{mechanism.name}: {err}; cancelling")
                    answer = "*"
                await self._write(
                    self.conn.send_raw(Step.AUTH, answer.encode("ascii") + b"\r\n"),
                    Step.AUTH,
                    "(SASL response hidden)",
                )
                return
            if reply.code != 334:
                self._mechanism = None
                account = self._typed.account
                if reply.code == 235 and account is not None:
                    self.login = account
                self._typed = _TypedLogin()
        script = self._script
        if script is None:
            return
        if reply.code >= 400 or (step is Step.DATA and reply.code != 354):
            self._script = None
            left = f"; {script.what} stopped" if script.what else ""
            self._emit("note", f"{step.label} refused{left}")
            return
        if not script.steps:
            self._script = None
            return
        next_step, data, shown = script.steps.popleft()
        if not script.steps:
            self._script = None
        await self._write(self.conn.send_raw(next_step, data), next_step, shown)

    async def _handshake(self) -> None:
        """TLS on this connection after a 220 to STARTTLS; the session starts over."""
        assert self._reader is not None
        self._handshaking = True
        self.changed()
        channel = TlsChannel(self.settings.tls_context, self.settings.server_hostname)
        started = self.clock()
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                while not channel.handshake():
                    await self._send_bytes(channel.pending_output())
                    data = await self._reader.read(_READ)
                    if not data:
                        raise ConnectionError("the server closed the connection in the handshake")
                    channel.received(data)
                await self._send_bytes(channel.pending_output())
        except TimeoutError:
            self._handshaking = False
            self._fail(f"TLS handshake: no answer after {HANDSHAKE_TIMEOUT:g} s")
            return
        except (ssl.SSLError, ssl.CertificateError, ConnectionError, OSError) as err:
            self._handshaking = False
            self._fail(f"{failure_detail(err)}; the connection is closed")
            return
        self._handshaking = False
        self.tls = channel
        self.tls_version = channel.obj.version() or "TLS"
        self.conn.tls_established()
        self.capabilities = NO_CAPABILITIES
        if self.conversation is not None:
            self.conversation.tls_started(self.clock())
        self._emit(
            "certificate",
            "TLS established",
            seconds=self.clock() - started,
            details=certificate_rows(channel.obj),
        )
        self._emit("note", "the session starts over: say EHLO again (RFC 3207)")

    async def _send_bytes(self, data: bytes) -> None:
        if data and self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()

    async def _write(
        self, data: bytes, step: Step | None, shown: str, *, owed: bool = True
    ) -> None:
        """Sends ``data`` (through TLS once it is on) and notes it in the transcript."""
        if self._writer is None or self.closed:
            self._emit("error", "not connected")
            return
        now = self.clock()
        if self.conversation is not None:
            self.conversation.client_data(now, data)
        if step is not None:
            self._owed.append(_Owed(step, now, shown))
        self._emit("sent", shown, step=step)
        wire = self.tls.encrypt(data) if self.tls is not None else data
        try:
            await self._send_bytes(wire)
        except (OSError, ConnectionError) as err:
            self._fail(f"cannot send: {err}")

    # -- what the user does ---------------------------------------------------------

    async def send_line(self, text: str, *, lax: bool = False) -> None:
        """A line as typed: a command, a SASL response after a 334, or message content
        after a 354 (dot-stuffed; a lone dot ends the message)."""
        async with self._send_lock:
            if self.closed or self._writer is None:
                self._emit("error", "not connected")
                return
            if self.busy or self.conn.state is State.TLS:
                self._emit("error", "wait: the reply to what was sent is still to come")
                return
            if lax:
                await self._send_lax(text)
                return
            if self.in_content:
                if text == ".":
                    await self._write(
                        self.conn.send_raw(Step.DATA_END, b".\r\n"), Step.DATA_END, "."
                    )
                else:
                    line = ("." + text) if text.startswith(".") else text
                    data = line.encode("utf-8") + b"\r\n"
                    await self._write(
                        self.conn.send_raw(Step.DATA_END, data, replies=0), None, text
                    )
                return
            if "\r" in text or "\n" in text:
                self._emit("error", "one line at a time (lax mode sends line breaks)")
                return
            data = text.encode("utf-8") + b"\r\n"
            if self.in_sasl:
                self._typed.response(text)
                await self._write(
                    self.conn.send_raw(Step.AUTH, data), Step.AUTH, "(SASL response hidden)"
                )
                return
            step = step_of_line(data)
            if step is Step.AUTH:
                self._typed = _TypedLogin.of_command(text)
            shown = redact_auth_line(data) if step is Step.AUTH else text
            await self._write(self.conn.send_raw(step, data), step, shown)

    async def _send_lax(self, text: str) -> None:
        data = lax_bytes(text)
        line = data.split(b"\n", 1)[0].rstrip(b"\r")
        shown = "(lax) " + text
        if self.in_sasl:
            await self._write(
                self.conn.send_raw(Step.AUTH, data), Step.AUTH, "(lax) (SASL response hidden)"
            )
        elif self.in_content:
            # The server alone knows whether this ended the message: a line that is a lone
            # dot, whatever its line ends, is owed the reply of a server that takes it so.
            end = data[:-1].rstrip(b"\r").rsplit(b"\n", 1)[-1] == b"."
            await self._write(
                self.conn.send_raw(Step.DATA_END, data, replies=int(end)),
                Step.DATA_END if end else None,
                shown,
            )
        else:
            step = step_of_line(line)
            if step is Step.AUTH:
                shown = "(lax) " + redact_auth_line(line)
            await self._write(self.conn.send_raw(step, data), step, shown)

    async def auth(self, mechanism_name: str, username: str, secret: str) -> None:
        """AUTH with a helper: the base64 is done here, the secret never shown."""
        async with self._send_lock:
            try:
                mechanism = client_mechanism(mechanism_name, username, secret)
                line = auth_command(mechanism)
            except LocalProtocolError as err:
                self._emit("error", str(err))
                return
            self._mechanism = mechanism
            self._typed = _TypedLogin(account=(username, secret))
            await self._write(
                self.conn.send_raw(Step.AUTH, line), Step.AUTH, redact_auth_line(line)
            )

    async def send_message(self, sender: str, recipients: list[str], content: bytes) -> None:
        """The composer's message: after a 354 just the content; otherwise MAIL, each
        RCPT, DATA and the content, each once the reply before it was positive."""
        async with self._send_lock:
            stuffed = dot_stuff(content)
            shown = f"(message, {len(content):,} bytes, dot-stuffed)"
            if self.in_content:
                await self._write(self.conn.send_raw(Step.DATA_END, stuffed), Step.DATA_END, shown)
                return
            steps: deque[tuple[Step, bytes, str]] = deque()
            mail = f"MAIL FROM:<{sender}>"
            steps.append((Step.MAIL, mail.encode("utf-8") + b"\r\n", mail))
            for recipient in recipients:
                rcpt = f"RCPT TO:<{recipient}>"
                steps.append((Step.RCPT, rcpt.encode("utf-8") + b"\r\n", rcpt))
            steps.append((Step.DATA, b"DATA\r\n", "DATA"))
            steps.append((Step.DATA_END, stuffed, shown))
            step, data, first = steps.popleft()
            self._script = _Script(steps, "the message")
            await self._write(self.conn.send_raw(step, data), step, first)

    async def close(self) -> None:
        """Closes the connection (without QUIT: type QUIT for that)."""
        if self.conversation is not None and not self.conversation.closed_by:
            self.conversation.client_closed(self.clock())
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
        self.changed()

    def overdue(self) -> Entry | None:
        """The oldest reply owed for longer than the reply timeout, said once."""
        if not self._owed or self.closed:
            return None
        owed = self._owed[0]
        waited = self.clock() - owed.sent
        if owed.late or waited < self.settings.reply_timeout:
            return None
        owed.late = True
        what = "the banner" if owed.step is Step.BANNER else f"the reply to {owed.shown}"
        entry = Entry(
            "error",
            self._now(),
            f"{what}: nothing after {waited:.0f} s (still waiting; QUIT or Ctrl+Q to give up)",
        )
        self.listener(entry)
        return entry

    # -- the recording ----------------------------------------------------------------

    def recording(self) -> Recording:
        """This session as a recording (the proxy's format), credentials left out."""
        if self.conversation is None:
            raise ValueError("nothing to save: the session has not started")
        session = self.conversation.finish(self.clock(), epoch=self.began)
        header = RecordingHeader(
            source="shell",
            epoch=self.epoch,
            started_at=datetime.fromtimestamp(self.epoch, UTC).isoformat(timespec="milliseconds"),
            server=self.target,
            content="full",
            auth="redacted",
            smtpbench=__version__,
        )
        return Recording(header, (session,))


@dataclass(slots=True)
class _TypedLogin:
    """The account of an AUTH under way, for /repeat: given to /auth, or read from what
    was typed (PLAIN's response, LOGIN's two); None while not known, or for any other
    mechanism."""

    account: tuple[str, str] | None = None
    mechanism: str = ""
    user: str | None = None  # LOGIN: the user name, until the password comes

    @classmethod
    def of_command(cls, text: str) -> _TypedLogin:
        words = text.split()
        typed = cls(mechanism=words[1].upper() if len(words) > 1 else "")
        if len(words) > 2:
            typed.response(words[2])
        return typed

    def response(self, text: str) -> None:
        """A SASL response as typed (base64), in turn."""
        try:
            decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return
        if self.mechanism == "PLAIN":
            parts = decoded.split("\0")
            if len(parts) == 3 and parts[1] and parts[2]:
                self.account = (parts[1], parts[2])
        elif self.mechanism == "LOGIN":
            if self.user is None:
                self.user = decoded
            elif self.user and decoded:
                self.account = (self.user, decoded)


def certificate_rows(obj: ssl.SSLObject) -> tuple[tuple[str, str], ...]:
    """The server's certificate as the probe describes it: subject, names, issuer,
    validity, protocol and cipher."""
    from smtpbench.probe.run import _certificate_details

    details = _certificate_details(cast(Any, obj))
    rows: list[tuple[str, str]] = []
    for key, label in (
        ("subject", "subject"),
        ("names", "names"),
        ("issuer", "issuer"),
        ("not_after", "valid until"),
        ("days_left", "days left"),
        ("protocol", "protocol"),
        ("cipher", "cipher"),
    ):
        value = details.get(key)
        if value is None or value == []:
            continue
        rows.append((label, ", ".join(value) if isinstance(value, list) else str(value)))
    return tuple(rows)
