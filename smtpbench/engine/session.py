"""One SMTP session, driven over a socket from a plan, timed and counted step by step.

Timing of each step (service time):
- connect: from the start of the TCP connect to the connection being open;
- banner: from the connection being open to the complete greeting;
- a command: from handing its line to the socket to its complete reply;
- DATA end: from handing the final dot (the whole stuffed content) to the socket
  to the reply that accepts or refuses the message: the server's work on it.
Message latency is measured from the session's intended start to each message's
final reply, and session latency to the end of the session, so a server or a
tool that falls behind shows there, never hidden by a late start.

A reply the scenario does not count as success is recorded as an
``unexpected reply`` at its step, and the session goes on the way a real client
would: a refused recipient is skipped, a refused transaction moves on to the
next message, a 421 ends the session. Connection errors end the session and
are classified; nothing raised here escapes ``run_session`` but cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from smtpbench.engine.transport import Address, classify, connect
from smtpbench.metrics.kinds import MESSAGE_LATENCY, SESSION_LATENCY, START_LAG, ErrorClass
from smtpbench.metrics.snapshot import FailureRecord, TranscriptLine
from smtpbench.protocol.client import NEED_DATA, ClientConnection, Response
from smtpbench.protocol.errors import ProtocolError
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step

if TYPE_CHECKING:
    from smtpbench.metrics.recorder import Recorder
    from smtpbench.scenario import MessageFactory, MessagePlan, Scenario, SessionPlan

RECEIVE_SIZE = 65536


class _ServerClosed(Exception):
    """The server closed the connection (EOF) while a reply was awaited."""


class _ServerShutdown(Exception):
    """A 421: the server is closing the channel; no QUIT is due."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session of a run shares, looked up once rather than per command."""

    address: Address
    greeting: str  # "EHLO" or "HELO"
    success: tuple[frozenset[int], ...]  # indexed by Step
    timeouts: tuple[float, ...]  # indexed by Step

    @classmethod
    def from_scenario(cls, scenario: Scenario, address: Address) -> SessionSettings:
        return cls(
            address=address,
            greeting=scenario.session.greeting,
            success=tuple(scenario.success),
            timeouts=tuple(scenario.timeouts),
        )


class Session:
    """State of one session while it runs; ``run`` never raises but ``trio.Cancelled``."""

    __slots__ = (
        "conn",
        "factory",
        "failure",
        "intended",
        "messages_done",
        "plan",
        "recorder",
        "settings",
        "start",
        "step",
        "stream",
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
        self.conn = ClientConnection()
        self.stream: trio.SocketStream | None = None
        self.step = Step.CONNECT
        self.failure: tuple[ErrorClass, Step, str] | None = None
        self.messages_done = 0
        self.transcript: list[tuple[bytes | int | None, Reply | None]] = []
        self.unanswered: bytes | int | None = None  # what was sent last, until its reply

    # -- the session ------------------------------------------------------

    async def run(self) -> None:
        recorder = self.recorder
        self.start = trio.current_time()
        recorder.latency(START_LAG, self.start - self.intended)
        recorder.started += 1
        recorder.in_flight += 1
        try:
            await self._talk()
        except trio.Cancelled:
            self._fail(ErrorClass.CANCELLED, self.step, "cut off at the end of the run")
            self._finish()
            raise
        except (_ServerClosed, _ServerShutdown, ProtocolError, OSError, trio.TooSlowError) as exc:
            self._connection_failed(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._connection_failed(exc)
        self._finish()
        if self.stream is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _talk(self) -> None:
        settings = self.settings
        with trio.fail_after(settings.timeouts[Step.CONNECT]):
            self.stream = await connect(settings.address)
        connected = trio.current_time()
        self.recorder.latency(Step.CONNECT, connected - self.start)
        self.step = Step.BANNER
        with trio.fail_after(settings.timeouts[Step.BANNER]):
            banner = await self._read_reply()
        self._count(Step.BANNER, None, banner, trio.current_time() - connected)
        if banner.code // 100 != 2:
            await self._exchange(Step.QUIT, self.conn.quit())
            return
        if not await self._greet():
            await self._exchange(Step.QUIT, self.conn.quit())
            return
        for number, message in enumerate(self.plan.messages):
            await self._transaction(number, message)
            self.messages_done += 1
        await self._exchange(Step.QUIT, self.conn.quit())

    async def _greet(self) -> bool:
        name = self.plan.helo_name
        conn = self.conn
        if self.settings.greeting == "HELO":
            return (await self._exchange(Step.HELO, conn.helo(name))).code // 100 == 2
        if (await self._exchange(Step.EHLO, conn.ehlo(name))).code // 100 == 2:
            return True
        # Servers that do not know EHLO still take HELO (RFC 5321 section 3.2).
        return (await self._exchange(Step.HELO, conn.helo(name))).code // 100 == 2

    async def _transaction(self, number: int, message: MessagePlan) -> None:
        conn = self.conn
        recorder = self.recorder
        if message.rset_before and number > 0:
            await self._exchange(Step.RSET, conn.rset())
        if message.noop_before:
            await self._exchange(Step.NOOP, conn.noop())
        content = self.factory.message_bytes(self.plan, number)
        size = conn.capabilities.size
        params = {"SIZE": str(len(content))} if size is not None else None
        if (await self._exchange(Step.MAIL, conn.mail(message.mail_from, params))).code // 100 != 2:
            recorder.messages_rejected += 1
            return
        for recipient in message.recipients:
            reply = await self._exchange(Step.RCPT, conn.rcpt(recipient))
            if reply.code // 100 == 2:
                recorder.recipients_accepted += 1
            else:
                recorder.recipients_rejected += 1
        if conn.accepted_recipients == 0:
            recorder.messages_rejected += 1
            await self._exchange(Step.RSET, conn.rset())
            return
        if (await self._exchange(Step.DATA, conn.data())).code != 354:
            recorder.messages_rejected += 1
            return
        final = await self._exchange(Step.DATA_END, conn.message(content), after_send=True)
        recorder.latency(MESSAGE_LATENCY, trio.current_time() - self.intended)
        if final.code in self.settings.success[Step.DATA_END]:
            recorder.messages_accepted += 1
        else:
            recorder.messages_rejected += 1

    # -- one command ------------------------------------------------------

    async def _exchange(self, step: Step, line: bytes, *, after_send: bool = False) -> Reply:
        """Sends a command, waits for its reply, times and counts it."""
        self.step = step
        stream = self.stream
        assert stream is not None
        self.unanswered = len(line) if step is Step.DATA_END else line
        with trio.fail_after(self.settings.timeouts[step]):
            sent = trio.current_time()
            await stream.send_all(line)
            if after_send:
                sent = trio.current_time()
            reply = await self._read_reply()
        self.recorder.bytes_sent += len(line)
        self._count(
            step, len(line) if step is Step.DATA_END else line, reply, trio.current_time() - sent
        )
        return reply

    async def _read_reply(self) -> Reply:
        conn = self.conn
        stream = self.stream
        assert stream is not None
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await stream.receive_some(RECEIVE_SIZE))
            elif isinstance(event, Response):
                return event.reply
            else:
                raise _ServerClosed(f"server closed the connection awaiting {self.step.label}")

    def _count(self, step: Step, sent: bytes | int | None, reply: Reply, seconds: float) -> None:
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
        if self.unanswered is not None:
            self.transcript.append((self.unanswered, None))
        if isinstance(exc, _ServerClosed):
            self._fail(ErrorClass.CLOSED, self.step, str(exc))
        else:
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, trio.TooSlowError):
                timeout = self.settings.timeouts[self.step]
                detail = f"no reply to {self.step.label} within {timeout:g}s"
            self._fail(classify(exc), self.step, detail)

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
            elif isinstance(sent, int):
                text = f"(message content, {sent} bytes)"
            else:
                text = "(connect)"
            lines.append(TranscriptLine(text, str(reply) if reply is not None else ""))
        return tuple(lines)


async def run_session(
    settings: SessionSettings,
    recorder: Recorder,
    factory: MessageFactory,
    plan: SessionPlan,
    intended: float,
) -> None:
    await Session(settings, recorder, factory, plan, intended).run()
