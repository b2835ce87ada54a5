"""What a generated session says: the scenario's plan, over a ``Session``.

Connect; with implicit TLS, the TLS handshake; the banner; EHLO (HELO if EHLO
is refused and the scenario asks for no extension; LHLO for LMTP); with
STARTTLS, STARTTLS, the handshake and EHLO again; the check that the server
advertises every extension the scenario asks for; AUTH; then each
transaction; then QUIT.

The session goes on the way a real client would where the server refuses: a
refused recipient is skipped, a refused transaction moves on to the next
message (RSET when every recipient was refused), a 421 ends the session. An
extension the scenario asks for that the server does not advertise ends the
session as a ``protocol error`` at the greeting, naming the extension and the
scenario key that asked for it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from smtpbench.engine.reactor import READ, Request
from smtpbench.engine.session import Command, Session, Talk
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.capabilities import Capabilities
from smtpbench.protocol.commands import orcpt, xtext
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step

if TYPE_CHECKING:
    from smtpbench.scenario import MessageFactory, MessagePlan, SessionPlan

# The scenario key that asks for each extension, for the error when one is missing.
_ASKED_BY = {
    "8BITMIME": 'session.body = "8bitmime"',
    "SMTPUTF8": "session.smtputf8",
    "CHUNKING": "session.chunking",
    "DSN": "session.dsn",
    "STARTTLS": 'tls.mode = "starttls"',
    "XCLIENT": "client.xclient",
}
Ask = Generator[Request, Any, bool]
# The steps, as module names: Python 3.11 reaches an enum member through its class with
# a Python-level call, and these run for every session or message.
_MAIL: Final = Step.MAIL
_RCPT: Final = Step.RCPT
_DATA: Final = Step.DATA
_DATA_END: Final = Step.DATA_END
_AUTH: Final = Step.AUTH
_BDAT: Final = Step.BDAT
_EHLO: Final = Step.EHLO
_HELO: Final = Step.HELO
_LHLO: Final = Step.LHLO
_NOOP: Final = Step.NOOP
_QUIT: Final = Step.QUIT
_RSET: Final = Step.RSET
_STARTTLS: Final = Step.STARTTLS
_XCLIENT: Final = Step.XCLIENT


class PlannedConversation:
    """One session of the scenario's plan."""

    __slots__ = ("_mail_for", "_mail_params", "_mail_size", "factory", "only", "plan")

    def __init__(
        self,
        factory: MessageFactory,
        plan: SessionPlan,
        only: tuple[tuple[int, MessagePlan], ...] | None = None,
    ) -> None:
        """``only``: the transactions to make, (number in the plan, envelope), instead of
        every message of the plan (a message tried again under MTA-like delivery)."""
        self.factory = factory
        self.plan = plan
        self.only = only
        # The last MAIL FROM parameters, and the server and size they were made for: a
        # session's messages most often share them.
        self._mail_for: Capabilities | None = None
        self._mail_size = -1
        self._mail_params: dict[str, str | None] | None = None

    @property
    def number(self) -> int:
        return self.plan.number

    @property
    def transactions(self) -> tuple[tuple[int, MessagePlan], ...]:
        """The transactions to make: (number in the plan, envelope)."""
        if self.only is not None:
            return self.only
        return tuple(enumerate(self.plan.messages))

    def talk(self, s: Session) -> Talk:
        ready = yield from s.open()
        banner = yield from s.banner(ready)
        if banner.code // 100 == 2 and (yield from self._open(s)):
            only = self.only  # a session of thousands of messages: no tuple made of them
            conn = s.conn
            pipelined = s.settings.pipelining and conn.capabilities.pipelining
            for number, message in enumerate(self.plan.messages) if only is None else only:
                content, dots, rset = self._begin(s, number, message)
                if pipelined:
                    yield from self._pipelined(s, message, content, dots, rset)
                    continue
                # One command at a time. Each reply of the message is waited for here (ask,
                # then answer each read), in the generator the reactor resumes: not in a
                # generator per message or per command, which every reply would go through.
                if rset:
                    yield from s.exchange(_RSET, conn.rset())
                if message.noop_before:
                    yield from s.exchange(_NOOP, conn.noop())
                mail = s.ask(_MAIL, conn.mail(message.mail_from, self._mail(s, content, message)))
                while mail is None:
                    mail = s.answer((yield READ))
                if mail.code // 100 != 2:
                    s.message_refused()
                    continue
                for recipient in message.recipients:
                    reply = s.ask(_RCPT, conn.rcpt(recipient, self._rcpt(s, recipient)))
                    while reply is None:
                        reply = s.answer((yield READ))
                    s.metrics.recipient(reply.code // 100 == 2)
                if conn.accepted_recipients == 0:
                    s.message_refused()
                    yield from s.exchange(_RSET, conn.rset())
                    continue
                if s.settings.chunking:
                    yield from self._chunks(s, content, pipelined=False)
                    continue
                data = s.ask(_DATA, conn.data())
                while data is None:
                    data = s.answer((yield READ))
                if data.code != 354:
                    s.message_refused()
                    continue
                line = conn.message(content, dots)
                if conn.lmtp:
                    yield from self._lmtp_content(s, line)
                    continue
                end = s.ask(_DATA_END, line, len(line))
                while end is None:
                    end = s.answer((yield READ))
                s.message_done([end])
        yield from s.exchange(_QUIT, s.conn.quit())

    # -- opening --------------------------------------------------------------------

    def _open(self, s: Session) -> Ask:
        """Greeting, STARTTLS, the extension check and AUTH; False to quit at once."""
        settings = s.settings
        if not (yield from self._greet(s)):
            return False
        if settings.tls_mode == "starttls":
            if not self._has_extensions(s, ("STARTTLS",)):
                return False
            if (yield from s.exchange(_STARTTLS, s.conn.starttls())).code != 220:
                return False
            yield from s.handshake()
            s.conn.tls_established()
            if not (yield from self._greet(s, fallback=False)):
                return False
        if settings.client.xclient and not (yield from self._xclient(s)):
            return False
        required = settings.required
        if settings.tls_mode != "none":
            required = tuple(word for word in required if word != "STARTTLS")
        if not self._has_extensions(s, required):
            return False
        return settings.auth_mechanism is None or (yield from self._authenticate(s))

    def _greet(self, s: Session, *, fallback: bool = True) -> Ask:
        name = self.plan.helo_name
        conn = s.conn
        settings = s.settings
        greeting = settings.greeting
        if greeting == "HELO":
            return (yield from s.exchange(_HELO, conn.helo(name))).code // 100 == 2
        if greeting == "LHLO":
            return (yield from s.exchange(_LHLO, conn.lhlo(name))).code // 100 == 2
        if (yield from s.exchange(_EHLO, conn.ehlo(name))).code // 100 == 2:
            return True
        if not fallback or settings.required or settings.tls_mode == "starttls":
            return False
        if settings.auth_mechanism is not None:
            return False
        # Servers that do not know EHLO still take HELO (RFC 5321 section 3.2).
        return (yield from s.exchange(_HELO, conn.helo(name))).code // 100 == 2

    def _xclient(self, s: Session) -> Ask:
        """Postfix's XCLIENT: the client this session stands for; on 220 the session
        starts over, and the client greets again."""
        if not self._has_extensions(s, ("XCLIENT",)):
            return False
        settings = s.settings
        number = self.plan.number
        address = settings.claimed[number % len(settings.claimed)]
        attributes = {
            # Postfix writes an IPv6 address with its prefix, as in its own logs.
            "ADDR": f"IPV6:{address}" if ":" in address else address,
            "NAME": settings.client.name_of(number),
            "HELO": self.plan.helo_name,
        }
        if (yield from s.exchange(_XCLIENT, s.conn.xclient(attributes))).code != 220:
            return False
        return (yield from self._greet(s, fallback=False))

    def _has_extensions(self, s: Session, keywords: tuple[str, ...]) -> bool:
        capabilities = s.conn.capabilities
        missing = [word for word in keywords if not capabilities.has(word)]
        if not missing:
            return True
        step = _LHLO if s.settings.greeting == "LHLO" else _EHLO
        asked = " or ".join(
            f"{word} ({_ASKED_BY.get(word, 'session.require')})" for word in missing
        )
        detail = f"the server does not advertise {asked}, which the scenario asks for"
        s.fail(ErrorClass.PROTOCOL, step, detail)
        return False

    def _authenticate(self, s: Session) -> Ask:
        settings = s.settings
        conn = s.conn
        name = settings.auth_mechanism
        assert name is not None
        step = _LHLO if settings.greeting == "LHLO" else _EHLO
        if name not in conn.capabilities.auth:
            offered = " ".join(sorted(conn.capabilities.auth)) or "no AUTH at all"
            tls = " (before TLS)" if settings.tls_mode == "none" else ""
            s.fail(
                ErrorClass.PROTOCOL,
                step,
                f"the server does not offer AUTH {name}{tls}, which auth.mechanism asks for; "
                f"it offers {offered}",
            )
            return False
        reply = yield from s.authenticate(name)
        return reply.code in settings.success[_AUTH]

    # -- a transaction --------------------------------------------------------------

    def _begin(
        self, s: Session, number: int, message: MessagePlan
    ) -> tuple[bytes, tuple[int, ...] | None, bool]:
        """A transaction begins: its content, where its lines that start with a dot start
        (None: not known), and whether an RSET goes first."""
        content, dots = self.factory.message_to_send(self.plan, number)
        transit = s.settings.transit
        if transit is not None:
            transit.prepare(self.plan.number, number, content)
        s.message_begun()
        return content, dots, message.rset_before and number > 0

    def _pipelined(
        self,
        s: Session,
        message: MessagePlan,
        content: bytes,
        dots: tuple[int, ...] | None,
        rset: bool,
    ) -> Talk:
        """A transaction in groups (RFC 2920): MAIL, every RCPT and DATA in one write, the
        content in the next one with the next transaction's commands."""
        conn = s.conn
        settings = s.settings
        group: list[Command] = []
        if rset:
            group.append(_command(_RSET, conn.rset()))
        if message.noop_before:
            group.append(_command(_NOOP, conn.noop()))
            yield from s.send_group(group)
            group = []
        group.append(_command(_MAIL, conn.mail(message.mail_from, self._mail(s, content, message))))
        for recipient in message.recipients:
            group.append(_command(_RCPT, conn.rcpt(recipient, self._rcpt(s, recipient))))
        chunked_together = settings.chunking and not conn.lmtp
        if chunked_together:
            group += self._chunk_commands(s, content)
        elif not settings.chunking:
            group.append(_command(_DATA, conn.data()))
        responses = yield from s.send_group(group)
        mail_ok = True
        data_reply: Reply | None = None
        finals: list[Reply] = []
        for response in responses:
            step = response.step
            if step is _MAIL:
                mail_ok = response.reply.code // 100 == 2
            elif step is _RCPT:
                s.metrics.recipient(response.reply.code // 100 == 2)
            elif step is _DATA:
                data_reply = response.reply
            elif step is _DATA_END:
                finals.append(response.reply)
        if chunked_together:
            s.message_done(finals)
            return
        if not mail_ok:
            s.message_refused()
            return
        if settings.chunking:  # LMTP: the last chunk waits for the RCPT replies
            if conn.accepted_recipients == 0:
                s.message_refused()
                yield from s.exchange(_RSET, conn.rset())
                return
            yield from self._chunks(s, content, pipelined=True)
            return
        if data_reply is None or data_reply.code != 354:
            s.message_refused()
            return
        if conn.accepted_recipients == 0:
            # A 354 after every RCPT was refused: the lone dot (RFC 2920 section 3.1).
            yield from s.send_group([(_DATA_END, conn.message(b""), 0)])
            s.message_refused()
            return
        if not conn.lmtp:
            line = conn.message(content, dots)
            s.deferred = (_DATA_END, line, len(line))
            s.deferred_recipients = conn.accepted_recipients  # the next MAIL starts over
            return
        yield from self._lmtp_content(s, conn.message(content, dots))

    def _mail(
        self, s: Session, content: bytes, message: MessagePlan
    ) -> dict[str, str | None] | None:
        capabilities = s.conn.capabilities
        size = len(content)
        if message.envid is None and capabilities is self._mail_for and size == self._mail_size:
            return self._mail_params  # the last message's: the same server and size
        settings = s.settings
        params: dict[str, str | None] = {}
        if capabilities.size is not None:
            params["SIZE"] = str(size)
        if settings.body == "8bitmime" or (settings.smtputf8 and capabilities.eightbitmime):
            params["BODY"] = "8BITMIME"
        if settings.smtputf8:
            params["SMTPUTF8"] = None
        dsn = settings.dsn
        if dsn.ret is not None:
            params["RET"] = dsn.ret
        if message.envid is not None:
            params["ENVID"] = xtext(message.envid)
            return params
        self._mail_for, self._mail_size, self._mail_params = capabilities, size, params or None
        return params or None

    def _rcpt(self, s: Session, recipient: str) -> dict[str, str | None] | None:
        dsn = s.settings.dsn
        if not dsn.notify and not dsn.orcpt:  # what RCPT takes of it (a property costs a call)
            return None
        params: dict[str, str | None] = {}
        if dsn.notify:
            params["NOTIFY"] = ",".join(dsn.notify)
        if dsn.orcpt:
            params["ORCPT"] = orcpt(recipient)
        return params or None

    def _lmtp_content(self, s: Session, line: bytes) -> Talk:
        """The content (``line``, stuffed and ended), and a reply for each recipient that
        took the message (RFC 2033)."""
        responses = yield from s.send_group([(_DATA_END, line, len(line))])
        s.message_done([response.reply for response in responses])

    def _chunk_commands(self, s: Session, content: bytes) -> list[Command]:
        size = s.settings.chunk_size
        commands: list[Command] = []
        for begin in range(0, len(content), size):
            chunk = content[begin : begin + size]
            last = begin + size >= len(content)
            line = s.conn.bdat(chunk, last)
            commands.append((_DATA_END if last else _BDAT, line, _chunk_shown(chunk, last)))
        return commands

    def _chunks(self, s: Session, content: bytes, *, pipelined: bool) -> Talk:
        """The message in BDAT chunks: in one write, or each chunk after the last one's reply."""
        if pipelined:
            responses = yield from s.send_group(self._chunk_commands(s, content))
            s.message_done([r.reply for r in responses if r.step is _DATA_END])
            return
        size = s.settings.chunk_size
        for begin in range(0, len(content), size):
            chunk = content[begin : begin + size]
            last = begin + size >= len(content)
            line = s.conn.bdat(chunk, last)
            step = _DATA_END if last else _BDAT
            responses = yield from s.send_group([(step, line, _chunk_shown(chunk, last))])
            if last:
                s.message_done([r.reply for r in responses])
            elif responses[0].reply.code // 100 != 2:
                s.message_refused()
                return


def _chunk_shown(chunk: bytes, last: bool) -> str:
    return f"BDAT {len(chunk)}{' LAST' if last else ''} (and {len(chunk)} bytes of message)"


def _command(step: Step, line: bytes) -> Command:
    return step, line, line


__all__ = ["PlannedConversation"]
