"""One message through the engine's session machine: what ``send`` says, and how it went.

``SendConversation`` is a ``Conversation`` (``engine/session.py``) built on the
same primitives as the scenario's (``exchange``, ``send_group``, ``handshake``,
``count``), so a message sent by hand is timed, classified and transcribed
exactly as one sent under load. ``send_one`` drives that single session through
the engine's ``Reactor`` and returns a ``SendResult``: each line sent with the
reply it got and when, the TLS details, and the outcome (an exit code).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import trio

from smtpbench import exitcodes
from smtpbench.engine.reactor import Reactor
from smtpbench.engine.session import Command, Session, SessionSettings, Shown, Talk
from smtpbench.engine.tls import SessionSetupError, certificate_details, client_context
from smtpbench.engine.transport import resolve
from smtpbench.metrics.events import SessionEvents, SessionFailure
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol import sasl
from smtpbench.protocol.commands import orcpt, xtext
from smtpbench.protocol.errors import RemoteProtocolError
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step
from smtpbench.scenario.model import DEFAULT_SUCCESS, Tls
from smtpbench.send.options import SendOptions

MAX_AUTH_ROUNDS = 5

# Outcomes, each with its exit code.
ACCEPTED = "accepted"
STOPPED = "stopped"  # --quit-after reached with nothing refused
REFUSED = "refused"
UNREACHABLE = "unreachable"
TLS_FAILED = "tls failed"
AUTH_FAILED = "auth failed"
BROKEN = "broken off"
EXIT_CODES = {
    ACCEPTED: exitcodes.OK,
    STOPPED: exitcodes.OK,
    REFUSED: exitcodes.MESSAGE_REFUSED,
    UNREACHABLE: exitcodes.TARGET_UNUSABLE,
    TLS_FAILED: exitcodes.TLS_FAILED,
    AUTH_FAILED: exitcodes.AUTH_FAILED,
    BROKEN: exitcodes.CONVERSATION_BROKEN,
}


@dataclass(frozen=True, slots=True)
class Line:
    """One command (or the connect, or the content) and the reply it got."""

    sent: Shown
    reply: Reply | None
    seconds: float | None  # service time of the reply, the engine's rules
    at: float | None  # when the reply arrived, seconds since the session began
    step: Step | None = None
    pipelined: bool = False  # went out in one write with the lines around it


@dataclass
class SendResult:
    server: str
    lines: list[Line] = field(default_factory=list)
    tls: dict[str, Any] | None = None
    connect_seconds: float | None = None
    tls_seconds: float | None = None
    outcome: str | None = None  # set once the conversation knows
    detail: str = ""
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    content: bytes = b""
    duration: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome or BROKEN]


class _Events(SessionEvents):
    """The session's ``SessionEvents``: the time of each reply, by transcript line."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.times: dict[int, tuple[float, float]] = {}
        self.timed_steps: dict[Step, float] = {}
        self.failure: SessionFailure | None = None

    def session_started(self, lag: float) -> None:
        pass

    def sent(self, size: int) -> None:
        pass

    def timed(self, step: int, seconds: float) -> None:
        self.timed_steps[Step(step)] = seconds

    def reply(
        self, step: int, code: int, seconds: float | None = None, enhanced: str | None = None
    ) -> None:
        s = self.session
        assert s is not None and seconds is not None  # a session times every reply
        # Session.count notes the time, then appends the line: this is its index.
        self.times[len(s.transcript.lines)] = (seconds, s.arrival - s.start)

    def recipient(self, accepted: bool) -> None:
        pass

    def message(self, accepted: bool, latency: float | None) -> None:
        pass

    def error(self, error: ErrorClass, step: int) -> None:
        pass

    def diverged(self, step: int, differs: bool) -> None:
        pass

    def session_ended(
        self, number: int, end: float, latency: float, aborted: int, failure: SessionFailure | None
    ) -> None:
        self.failure = failure


class _Stop(Exception):
    """The conversation is over with an outcome (QUIT still goes out when it may)."""


class SendConversation:
    """What ``send`` says: one transaction, stopping where ``--quit-after`` asks."""

    def __init__(self, options: SendOptions, result: SendResult, events: _Events) -> None:
        self.options = options
        self.result = result
        self.events = events
        self.pipelined: set[int] = set()  # transcript lines that went out in a group

    @property
    def number(self) -> int:
        return 0

    def _end(self, outcome: str, detail: str) -> None:
        self.result.outcome = outcome
        self.result.detail = detail
        raise _Stop

    def _reached(self, step: str) -> bool:
        return self.options.quit_after == step

    def talk(self, s: Session) -> Talk:
        options = self.options
        ready = yield from s.open()
        if s.tls is not None:
            self._tls_details(s)
        if self._reached("connect"):
            self.result.outcome, self.result.detail = STOPPED, "stopped after connecting"
            return
        try:
            banner = yield from s.banner(ready)
            if banner.code // 100 != 2:
                self._end(REFUSED, f"the server refused the session: {banner}")
            if self._reached("banner"):
                self._end(STOPPED, "stopped after the banner")
            yield from self._greet(s)
            if options.tls == "starttls":
                if self._reached("ehlo"):
                    self._end(STOPPED, "stopped after EHLO")
                if not s.conn.capabilities.has("STARTTLS"):
                    self._end(TLS_FAILED, "the server does not offer STARTTLS")
                reply = yield from s.exchange(Step.STARTTLS, s.conn.starttls())
                if reply.code != 220:
                    self._end(TLS_FAILED, f"STARTTLS refused: {reply}")
                yield from s.handshake()
                s.conn.tls_established()
                self._tls_details(s)
                if self._reached("tls"):
                    self._end(STOPPED, "stopped after the TLS handshake")
                yield from self._greet(s)
            elif self._reached("ehlo") or self._reached("tls"):
                self._end(STOPPED, "stopped after EHLO")
            self._check_extensions(s)
            if options.auth is not None:
                yield from self._authenticate(s)
            if self._reached("auth"):
                self._end(STOPPED, "stopped after AUTH")
            yield from self._transaction(s)
        except _Stop:
            pass
        if s.conn.state.name in ("CONTENT", "CLOSED", "DATA", "TLS", "AUTH", "BANNER"):
            return  # nothing more may be said: the connection is closed as it is
        yield from s.exchange(Step.QUIT, s.conn.quit())

    # -- opening --------------------------------------------------------------------

    def _greet(self, s: Session) -> Talk:
        options = self.options
        conn = s.conn
        if options.lmtp:
            reply = yield from s.exchange(Step.LHLO, conn.lhlo(options.helo))
        else:
            reply = yield from s.exchange(Step.EHLO, conn.ehlo(options.helo))
            if reply.code // 100 != 2 and not self._needs_extensions():
                reply = yield from s.exchange(Step.HELO, conn.helo(options.helo))
        if reply.code // 100 != 2:
            self._end(REFUSED, f"the server refused the greeting: {reply}")

    def _needs_extensions(self) -> bool:
        o = self.options
        return bool(
            o.tls == "starttls"
            or o.auth
            or o.pipelining
            or o.bdat
            or o.eightbitmime
            or o.smtputf8
            or not o.dsn.is_empty
            or o.envid
        )

    def _check_extensions(self, s: Session) -> None:
        o = self.options
        caps = s.conn.capabilities
        asked = [
            ("PIPELINING", "--pipelining", o.pipelining),
            ("CHUNKING", "--bdat", o.bdat),
            ("8BITMIME", "--8bitmime", o.eightbitmime),
            ("SMTPUTF8", "--smtputf8", o.smtputf8),
            ("DSN", "--dsn", not o.dsn.is_empty or o.envid is not None),
        ]
        missing = [
            f"{word} ({flag})" for word, flag, wanted in asked if wanted and not caps.has(word)
        ]
        if missing:
            self._end(REFUSED, f"the server does not offer {', '.join(missing)}")

    def _authenticate(self, s: Session) -> Talk:
        o = self.options
        conn = s.conn
        name = o.auth
        assert name is not None
        if name not in conn.capabilities.auth:
            offered = " ".join(sorted(conn.capabilities.auth)) or "no AUTH at all"
            tls = " before TLS" if s.tls is None else ""
            self._end(
                AUTH_FAILED, f"the server does not offer AUTH {name}{tls}; it offers {offered}"
            )
        mechanism = sasl.client_mechanism(name, o.user, o.password)
        line = sasl.auth_command(mechanism)
        shown: Shown = sasl.redact_auth_line(line)
        s.unanswered.append(shown)
        began = s.now()
        s.arm(Step.AUTH, began)
        s.write(conn.auth(line))
        for _ in range(MAX_AUTH_ROUNDS):
            reply = (yield from s.read_reply()).reply
            if reply.code != 334:
                break
            self.events.times[len(s.transcript.lines)] = (s.arrival - began, s.arrival - s.start)
            s.transcript.lines.append((shown, reply))
            challenge = reply.lines[0].strip() if reply.lines else ""
            response = conn.auth_response(mechanism.respond(challenge))
            shown = s.unanswered[0] = sasl.redact_auth_line(response)
            began = s.now()
            s.write(response)
        else:
            raise RemoteProtocolError(f"AUTH {name}: more than {MAX_AUTH_ROUNDS} challenges")
        s.unanswered.pop(0)
        s.count(Step.AUTH, shown, reply, s.arrival - began)
        if reply.code != 235:
            self._end(AUTH_FAILED, f"AUTH {name} refused: {reply}")

    def _tls_details(self, s: Session) -> None:
        tls = s.tls
        assert tls is not None
        obj = tls.obj
        cipher = obj.cipher()
        details: dict[str, Any] = {
            "protocol": obj.version(),
            "cipher": cipher[0] if cipher else None,
            "bits": cipher[2] if cipher else None,
            "verified": self.options.verify,
            "server_name": s.settings.server_hostname,
        }
        details.update(certificate_details(obj.getpeercert(binary_form=True) or b""))
        self.result.tls = details
        self.result.tls_seconds = self.events.timed_steps.get(Step.TLS)

    # -- the transaction ------------------------------------------------------------

    def _mail_params(self, s: Session) -> dict[str, str | None] | None:
        o = self.options
        caps = s.conn.capabilities
        params: dict[str, str | None] = {}
        if caps.size is not None:
            params["SIZE"] = str(len(o.content))
        if o.eightbitmime:
            params["BODY"] = "8BITMIME"
        if o.smtputf8:
            params["SMTPUTF8"] = None
        if o.dsn.ret is not None:
            params["RET"] = o.dsn.ret
        if o.envid is not None:
            params["ENVID"] = xtext(o.envid)
        return params or None

    def _rcpt_params(self, recipient: str) -> dict[str, str | None] | None:
        dsn = self.options.dsn
        params: dict[str, str | None] = {}
        if dsn.notify:
            params["NOTIFY"] = ",".join(dsn.notify)
        if dsn.orcpt:
            params["ORCPT"] = orcpt(recipient)
        return params or None

    def _group(self, s: Session, commands: list[Command]) -> Any:
        first = len(s.transcript.lines)
        responses = yield from s.send_group(commands)
        if len(commands) > 1:
            self.pipelined.update(range(first, len(s.transcript.lines)))
        return responses

    def _transaction(self, s: Session) -> Talk:
        o = self.options
        conn = s.conn
        mail = (Step.MAIL, conn.mail(o.mail_from, self._mail_params(s)))
        recipients = () if self._reached("mail") else o.recipients
        if o.pipelining:
            group: list[Command] = [(mail[0], mail[1], mail[1])]
            for recipient in recipients:
                line = conn.rcpt(recipient, self._rcpt_params(recipient))
                group.append((Step.RCPT, line, line))
            if not o.bdat and self.options.quit_after not in ("mail", "rcpt"):
                line = conn.data()
                group.append((Step.DATA, line, line))
            responses = yield from self._group(s, group)
            by_step: dict[Step, list[Reply]] = {}
            for response in responses:
                by_step.setdefault(response.step, []).append(response.reply)
            mail_reply = by_step[Step.MAIL][0]
            rcpt_replies = by_step.get(Step.RCPT, [])
            data_reply = by_step.get(Step.DATA, [None])[0]
        else:
            mail_reply = yield from s.exchange(*mail)
            rcpt_replies = []
            if mail_reply.code // 100 == 2:
                for recipient in recipients:
                    line = conn.rcpt(recipient, self._rcpt_params(recipient))
                    rcpt_replies.append((yield from s.exchange(Step.RCPT, line)))
            data_reply = None
        if mail_reply.code // 100 != 2:
            self._end(REFUSED, f"the sender was refused: {mail_reply}")
        if self._reached("mail"):
            self._end(STOPPED, "stopped after MAIL FROM")
        for recipient, reply in zip(recipients, rcpt_replies, strict=False):
            (self.result.accepted if reply.code // 100 == 2 else self.result.refused).append(
                recipient
            )
        if not self.result.accepted:
            if data_reply is not None and data_reply.code == 354:
                # A 354 after every RCPT was refused: the lone dot (RFC 2920 section 3.1).
                yield from s.send_group([(Step.DATA_END, conn.message(b""), 0)])
            self._end(REFUSED, "every recipient was refused")
        if self._reached("rcpt"):
            self._end(STOPPED, "stopped after RCPT TO")
        if o.bdat:
            if self._reached("data"):
                self._end(STOPPED, "stopped before the first BDAT chunk")
            finals = yield from self._chunks(s)
        else:
            if data_reply is None:
                data_reply = yield from s.exchange(Step.DATA, conn.data())
            if data_reply.code != 354:
                self._end(REFUSED, f"DATA was refused: {data_reply}")
            if self._reached("data"):
                # Nothing but the content may follow a 354: the connection is closed.
                self._end(STOPPED, "stopped after DATA (the connection is closed, no message)")
            line = conn.message(o.content)
            responses = yield from s.send_group([(Step.DATA_END, line, len(line))])
            finals = [r.reply for r in responses]
        self._judge(finals)

    def _chunks(self, s: Session) -> Any:
        o = self.options
        conn = s.conn
        size = o.chunk_size
        content = o.content
        finals: list[Reply] = []
        begins = list(range(0, len(content), size)) or [0]
        for begin in begins:
            chunk = content[begin : begin + size]
            last = begin + size >= len(content)
            line = conn.bdat(chunk, last)
            shown = f"BDAT {len(chunk)}{' LAST' if last else ''} ({len(chunk)} bytes of message)"
            responses = yield from s.send_group(
                [(Step.DATA_END if last else Step.BDAT, line, shown)]
            )
            if last:
                finals = [r.reply for r in responses]
            elif responses[0].reply.code // 100 != 2:
                self._end(REFUSED, f"a BDAT chunk was refused: {responses[0].reply}")
        return finals

    def _judge(self, finals: list[Reply]) -> None:
        result = self.result
        if self.options.lmtp:
            # One reply per accepted recipient, in their order (RFC 2033 section 4.2).
            taken = list(result.accepted)
            result.accepted = []
            for recipient, reply in zip(taken, finals, strict=False):
                (result.accepted if reply.code // 100 == 2 else result.refused).append(recipient)
            if not result.accepted:
                self._end(REFUSED, "the message was refused for every recipient")
        elif not finals or finals[0].code // 100 != 2:
            self._end(REFUSED, f"the message was refused: {finals[0] if finals else 'no reply'}")
        if result.refused:
            self._end(
                REFUSED,
                f"accepted for {len(result.accepted)} recipient(s), refused for "
                f"{', '.join(result.refused)}",
            )
        self._end(ACCEPTED, f"accepted: {finals[-1]}")


def settings_for(options: SendOptions, address: Any) -> SessionSettings:
    """``SessionSetupError`` when a TLS file cannot be read."""
    context: ssl.SSLContext | None = None
    tls = Tls(mode=options.tls, verify=options.verify, sni=options.sni, ca_file=options.ca_file)
    if options.tls != "none":
        context = client_context(tls)
    timeouts = tuple(options.timeout for _ in Step)
    return SessionSettings(
        address=address,
        greeting="LHLO" if options.lmtp else "EHLO",
        success=DEFAULT_SUCCESS,
        timeouts=timeouts,
        tls_mode=options.tls,
        ssl_context=context,
        server_hostname=(options.sni or options.host) if context is not None else None,
    )


class _OneSession:
    """The reactor's feeder: one session, started at once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.reactor: Reactor | None = None
        self.started = False

    @property
    def finished(self) -> bool:
        return self.started

    def due_at(self) -> float:
        return float("-inf") if not self.started else float("inf")

    def start_due(self, now: float) -> None:
        self.started = True
        assert self.reactor is not None
        self.reactor.start(self.session)

    def session_ended(self) -> None:
        pass

    def cut(self) -> None:
        pass


async def send_one(options: SendOptions) -> SendResult:
    """Sends the message; ``TargetError`` (``SessionSetupError``) when the host does not
    resolve or a TLS file cannot be read: everything else is in the result."""
    address = await resolve(options.host, options.port)
    settings = settings_for(options, address)
    result = SendResult(server=str(address), content=options.content)
    events = _Events()
    conversation = SendConversation(options, result, events)
    now = trio.current_time
    session = Session(settings, events, conversation, now(), now, whole_transcript=True)
    events.session = session
    feeder = _OneSession(session)
    reactor = Reactor(feeder, sweep_interval=min(0.05, options.timeout / 20))
    feeder.reactor = reactor
    await reactor.run()
    result.duration = now() - session.start
    result.connect_seconds = events.timed_steps.get(Step.CONNECT)
    for index, (sent, reply) in enumerate(session.transcript.lines):
        seconds, at = events.times.get(index, (None, None))
        result.lines.append(
            Line(sent, reply, seconds, at, pipelined=index in conversation.pipelined)
        )
    failure = session.failure
    if result.outcome is None:  # the conversation was cut short: the session says why
        if failure is None:
            result.outcome, result.detail = BROKEN, "the conversation ended early"
        else:
            error, step, detail = failure
            if error is ErrorClass.REPLY:  # a 421: the server closed the session
                result.outcome, result.detail = REFUSED, f"{step.label}: {detail}"
            elif error is ErrorClass.TLS:
                if detail.startswith("certificate not accepted") and options.verify:
                    detail += " (--ca-file PEM trusts its CA; --insecure looks past it)"
                result.outcome, result.detail = TLS_FAILED, detail
            elif step is Step.CONNECT:
                result.outcome, result.detail = UNREACHABLE, f"{error.label}: {detail}"
            else:
                result.outcome, result.detail = BROKEN, f"{error.label} at {step.label}: {detail}"
    elif failure is not None and failure[1] is Step.QUIT:
        result.detail += f" (then {failure[0].label} at QUIT: {failure[2]})"
    return result


__all__ = ["SendConversation", "SendResult", "SessionSetupError", "send_one"]
