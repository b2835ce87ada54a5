"""The session machine with no socket: a ``Session`` talks to the server state machine
(``protocol/server.py``) through a test's hands, on a clock the test moves, so what it
sends, what it counts and how it times each step are checked exactly.

Each time the session waits to read, what it wrote goes to the server, the server's
events are answered, the clock moves on ``THINK`` seconds, and the replies come back
in one read: so every reply's service time is exactly ``THINK``, and a pipelined
group's replies all are too (timed from the start of the group's write).
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpbench.engine.conversation import PlannedConversation
from smtpbench.engine.reactor import CONNECT, READ, Link, SessionCancelled, StepTimeout
from smtpbench.engine.session import Conversation, Session, SessionSettings
from smtpbench.engine.transport import Address
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.sessions import SessionLog, SessionRecord
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.server import (
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    MessageReceived,
    NeedData,
    ServerConnection,
)
from smtpbench.protocol.steps import Step
from smtpbench.run.prepare import run_info
from smtpbench.scenario import MessageFactory, parse_scenario

ADDRESS = Address("127.0.0.1", 25, 2, ("127.0.0.1", 25))
THINK = 0.001  # seconds the server takes per read, on the test's clock
EHLO_LINES = ["mx.test", "PIPELINING", "SIZE 1000000", "8BITMIME", "CHUNKING", "AUTH PLAIN"]

Reply = tuple[int, str, str | None]
Answer = Callable[[Any, ServerConnection], bytes | None]  # None: the server hangs up


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ServerTls:
    """The server's side of a TLS session, over memory buffers as the client's is."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.done = False
        self.closed = False  # the client's close_notify came

    def received(self, data: bytes) -> bytes:
        """The plaintext that ``data`` completes (nothing while the handshake goes on)."""
        self.incoming.write(data)
        if not self.done:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.done = True
        parts = []
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:  # no record to wait for: the client's close_notify
                self.closed = True
                break
            parts.append(chunk)
        return b"".join(parts)

    def send(self, plain: bytes) -> bytes:
        if plain:
            self.obj.write(plain)
        return self.outgoing.read()


class Wire(Link):
    """The session's link as the test holds it (a ``Link`` no reactor runs): what it
    wrote; ``slow`` writes (at least that many bytes) are taken by the kernel ``lag``
    seconds later, as a full buffer is, and ``written_at`` says so from the session's
    next read on (as the reactor sets it when it finishes the write, while the session
    waits)."""

    def __init__(
        self,
        clock: Clock,
        slow: int | None = None,
        lag: float = 0.0,
        taken: int = 0,
        spent: float = 0.0,
    ) -> None:
        """``taken``: bytes of a slow write the kernel takes at once, the rest ``lag``
        later. ``spent``: seconds each write call takes (on loopback a send hands the
        bytes to the server, which may be at work before the call is back)."""
        self.sent = bytearray()
        self.sock = object()
        self.written_at = 0.0
        self.marked_at = 0.0
        self.clock = clock
        self.slow = slow
        self.lag = lag
        self.taken = taken
        self.taken_at: float | None = None  # when the kernel takes the last slow write
        self.mark_pending = False
        self.spent = spent

    def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
        self.sent += data
        self.clock.now += self.spent
        if self.slow is not None and len(data) >= self.slow:
            self.taken_at = self.clock.now + self.lag
            if mark and self.taken >= mark:
                self.marked_at = began  # the first part went with the first send
            else:
                self.mark_pending = bool(mark)
            return False
        return True

    def flushed(self) -> None:
        """The session waits: the reactor finishes what the kernel had not taken."""
        if self.taken_at is not None:
            self.written_at, self.taken_at = self.taken_at, None
            if self.mark_pending:
                self.marked_at, self.mark_pending = self.written_at, False


def answers(**replies: Reply | list[Reply]) -> Answer:
    """A server that says yes to everything, but for the steps named (by ``Step`` name):
    one reply for every time, or a list taken in turn (the last one kept). A code of 0
    hangs up instead of answering."""
    counts: dict[str, int] = {}

    def pick(name: str, default: Reply) -> Reply:
        given = replies.get(name, default)
        if isinstance(given, list):
            index = counts.get(name, 0)
            counts[name] = index + 1
            return given[min(index, len(given) - 1)]
        return given

    def answer(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, MessageReceived):
            reply = pick("DATA_END", (250, "queued", "2.0.0"))
        elif isinstance(event, AuthResponse):
            reply = pick("AUTH", (235, "ok", "2.7.0"))
        else:
            assert isinstance(event, CommandReceived), event
            if not event.allowed:
                return server.reply(503, "bad sequence of commands", "5.5.1")
            step = event.step
            if step is Step.EHLO and "EHLO" not in replies:
                return server.reply(250, EHLO_LINES)
            default: Reply = {
                Step.DATA: (354, "go ahead", None),
                Step.QUIT: (221, "bye", "2.0.0"),
            }.get(step, (250, "ok", "2.0.0"))
            reply = pick(step.name, default)
        if reply[0] == 0:
            return None
        return server.reply(*reply)

    return answer


@dataclasses.dataclass
class Outcome:
    record: dict[str, Any]  # the session's line of sessions.ndjson
    recorder: Recorder
    session: Session
    deadlines: list[float]  # the session's deadline at each read, on the test's clock
    tls_closed: bool = False  # the session ended its TLS session with close_notify

    def steps(self) -> list[tuple[str, float | None, int | None]]:
        return [(label, seconds, code) for label, seconds, code in self.record["steps"]]

    def labels(self) -> list[str]:
        return [label for label, _, _ in self.steps()]

    def codes(self, label: str) -> list[int | None]:
        return [code for step, _, code in self.steps() if step == label]

    def snapshot(self) -> Snapshot:
        self.recorder.flush(1.0)
        return self.recorder.snapshot(1.0)


def converse(
    tmp_path: Path,
    scenario: str = "",
    answer: Answer | None = None,
    *,
    wire: Callable[[Clock], Wire] | None = None,
    throw_at: tuple[int, BaseException] | None = None,
    number: int = 0,
    late: float = 0.0,
    adjust: Callable[[SessionSettings], SessionSettings] | None = None,
    tls: ssl.SSLContext | None = None,
    conversation: Conversation | None = None,
    domain: str | None = None,
    attempt: dict[str, Any] | None = None,
    banner: bytes | None = None,
    split: bool = False,
) -> Outcome:
    """Runs session ``number`` of ``scenario`` (TOML added to a one-session base) to its
    end, started ``late`` seconds after its intended start, with settings changed by
    ``adjust``. ``throw_at`` = (n, exception): thrown into the session at its n-th read
    instead (n = 0: at the connect). ``tls``: the server's context, for STARTTLS or
    implicit TLS. ``conversation``:
    what the session says instead of the scenario's plan; ``domain``: the first
    recipient's, as the run gives it; ``attempt``: ``origin``, ``tries`` and
    ``delivered_before`` of a message tried again; ``banner``: what the client reads
    as the greeting (the server's state machine greets with 220 all the same).
    ``split``: what the server says comes in two reads, its first byte alone (a reply
    cut by the network), where the session reads again to make the reply whole."""
    parsed = parse_scenario(f'name = "machine"\nseed = 1\n{scenario}')
    clock = Clock()
    settings = SessionSettings.from_scenario(parsed, ADDRESS, environ={"SECRET": "s3cret"})
    if adjust is not None:
        settings = adjust(settings)
    factory = MessageFactory(parsed, seed=1)
    recorder = Recorder(run_info(parsed, "test", 1))
    log = SessionLog(tmp_path / "sessions.ndjson")
    record = SessionRecord(recorder, log, number, 0.0)
    if conversation is None:
        conversation = PlannedConversation(factory, factory.plan_session(number))
    session = Session(
        settings, record, conversation, clock.now - late, clock, domain, **(attempt or {})
    )
    implicit = settings.tls_mode == "implicit"
    server = ServerConnection(tls=implicit)
    answer = answer or answers()
    link = wire(clock) if wire is not None else Wire(clock)
    run = session.begin()  # driven here as the reactor drives it
    assert next(run) is CONNECT
    clock.now += THINK
    greeting = server.reply(220, "mx.test ESMTP", None)
    if banner is not None:
        greeting = banner
    server_tls = ServerTls(tls) if implicit and tls is not None else None
    hung_up = False

    def serve(data: bytes) -> bytes:
        """What the server sends back to what the session wrote since its last read."""
        nonlocal greeting, server_tls, hung_up
        clear = b""  # what goes before TLS (the 220 to STARTTLS)
        if server_tls is not None:
            data = server_tls.received(data)
            if not server_tls.done:
                return server_tls.send(b"")
        plain, greeting = greeting, b""  # the banner, once there is a channel for it
        if data:
            server.receive_data(data)
        while True:
            event = server.next_event()
            if isinstance(event, NeedData | ConnectionClosed):
                break
            said = answer(event, server)
            if said is None:
                hung_up = True
                break
            plain += said
            if (
                server_tls is None
                and isinstance(event, CommandReceived)
                and event.step is Step.STARTTLS
                and said.startswith(b"220")
            ):
                assert tls is not None, "STARTTLS asked of a server given no TLS context"
                clear, plain = plain, b""
                server_tls = ServerTls(tls)
                break
        return clear + (server_tls.send(plain) if server_tls is not None else plain)

    reads = 0
    deadlines = []
    try:
        if throw_at is not None and throw_at[0] == 0:  # at the connect
            request = run.throw(throw_at[1])
        else:
            request = run.send(link)
        while True:
            assert request is READ, request
            deadlines.append(session.deadline)
            reads += 1
            link.flushed()
            clock.now += THINK
            # What the server says to what was written before this read, in one read
            # (end of file once the server hung up).
            out = b""
            if not hung_up:
                out = serve(bytes(link.sent))
                link.sent.clear()
                assert out or hung_up, "the session waits for a reply the server does not owe"
            if throw_at is not None and reads == throw_at[0]:
                request = run.throw(throw_at[1])
                continue
            if split and len(out) > 1 and server_tls is None:
                request = run.send(out[:1])
                assert request is READ, "a reply's first byte taken for the whole reply"
                out = out[1:]
            request = run.send(out)
    except StopIteration:
        session.ended(None)
    except Exception as exc:  # what ended the session, told to it as the reactor does
        session.ended(exc)
    tls_closed = False
    if server_tls is not None and server_tls.done and not hung_up:
        server_tls.received(bytes(link.sent))
        tls_closed = server_tls.closed
    log.close()
    lines = (tmp_path / "sessions.ndjson").read_text().splitlines()
    return Outcome(json.loads(lines[-1]), recorder, session, deadlines, tls_closed)


def test_a_plain_session_says_what_a_client_says_and_times_each_reply(tmp_path: Path) -> None:
    outcome = converse(tmp_path, '[session]\nrecipients = 2\nsize = "1KiB"\n')
    steps = outcome.steps()
    assert [label for label, _, _ in steps] == [
        "connect", "banner", "EHLO", "MAIL", "RCPT", "RCPT", "DATA", "DATA end", "QUIT",
    ]  # fmt: skip
    assert [code for _, _, code in steps] == [None, 220, 250, 250, 250, 250, 354, 250, 221]
    assert all(seconds == pytest.approx(THINK, abs=1e-9) for _, seconds, _ in steps)
    record = outcome.record
    assert record["outcome"] == "ok"
    assert record["messages_accepted"] == 1 and record["messages_aborted"] == 0
    # The message's latency runs from the intended start to its final reply: 8 reads.
    assert record["message_latency"] == [pytest.approx(8 * THINK, abs=1e-9)]
    recorder = outcome.recorder
    assert recorder.recipients_accepted == 2
    assert recorder.completed == 1 and recorder.in_flight == 0


def test_pipelined_groups_and_content_carried_in_the_next_write(tmp_path: Path) -> None:
    outcome = converse(tmp_path, '[session]\nmessages = 2\npipelining = true\nsize = "1KiB"\n')
    labels = outcome.labels()
    # Message 1's content goes with message 2's MAIL, RCPT and DATA; message 2's with QUIT.
    assert labels == [
        "connect", "banner", "EHLO", "MAIL", "RCPT", "DATA",
        "DATA end", "MAIL", "RCPT", "DATA", "DATA end", "QUIT",
    ]  # fmt: skip
    assert all(s == pytest.approx(THINK, abs=1e-9) for _, s, _ in outcome.steps())
    assert outcome.record["messages_accepted"] == 2
    # One round trip per message: the second ends one read after the first.
    first, second = outcome.record["message_latency"]
    assert second - first == pytest.approx(THINK, abs=1e-9)


def test_data_end_is_timed_from_when_the_kernel_took_the_last_byte(tmp_path: Path) -> None:
    # The content (and only it) fills the socket buffer: taken 0.4 ms after the write.
    outcome = converse(
        tmp_path, '[session]\nsize = "64KiB"\n', wire=lambda clock: Wire(clock, 60000, 0.0004)
    )
    data_end = [s for label, s, _ in outcome.steps() if label == "DATA end"]
    assert data_end == [pytest.approx(THINK - 0.0004, abs=1e-9)]


def test_content_carried_first_is_timed_from_its_own_last_byte(tmp_path: Path) -> None:
    # Pipelined: each message's content goes first in the next group's write. The kernel
    # takes the content at once and the commands after it 5 ms later (a full buffer):
    # the server can answer the content before the whole write is taken, and its DATA
    # end is the server's time from the content's last byte, never less.
    outcome = converse(
        tmp_path,
        '[session]\nmessages = 2\npipelining = true\nsize = "1KiB"\n',
        wire=lambda clock: Wire(clock, slow=900, lag=0.005, taken=100_000),
    )
    data_end = [s for label, s, _ in outcome.steps() if label == "DATA end"]
    assert data_end == [pytest.approx(THINK, abs=1e-9)] * 2


@pytest.mark.parametrize("pipelining", ["false", "true"])
def test_every_reply_is_timed_from_the_start_of_the_send_that_carried_it(
    tmp_path: Path, pipelining: str
) -> None:
    # Each write takes 0.5 ms, as a send on loopback does while it hands the bytes to the
    # server: the server's time (THINK) is counted in full, the DATA end's as every
    # other command's, never from the send's return (which read less than the server's
    # time, and less than MAIL's, against a fast server).
    outcome = converse(
        tmp_path,
        f'[session]\nmessages = 2\npipelining = {pipelining}\nsize = "1KiB"\n',
        wire=lambda clock: Wire(clock, spent=0.0005),
    )
    replies = [(label, s) for label, s, _ in outcome.steps() if label not in ("connect", "banner")]
    assert {label for label, _ in replies} >= {"MAIL", "RCPT", "DATA", "DATA end", "QUIT"}
    assert all(s == pytest.approx(THINK + 0.0005, abs=1e-9) for _, s in replies), replies


@pytest.mark.parametrize("pipelining", ["false", "true"])
def test_a_reply_cut_in_two_reads_is_read_whole(tmp_path: Path, pipelining: str) -> None:
    # Every reply comes in two reads, its first byte alone: the session reads on until
    # the reply is whole, and times it from the read that completed it.
    outcome = converse(
        tmp_path,
        f'[session]\nmessages = 2\npipelining = {pipelining}\nsize = "1KiB"\n',
        split=True,
    )
    assert outcome.record["messages_accepted"] == 2 and outcome.record["outcome"] == "ok"
    replies = [(label, s) for label, s, _ in outcome.steps() if label != "connect"]
    assert {"MAIL", "RCPT", "DATA", "DATA end", "QUIT"} <= {label for label, _ in replies}
    assert all(s == pytest.approx(THINK, abs=1e-9) for _, s in replies), replies


def test_a_reply_begun_before_its_command_is_read_whole_after_it(tmp_path: Path) -> None:
    # A server that sends the first byte of its RCPT reply with its MAIL reply, before
    # RCPT is sent: when RCPT is asked, a part of its reply is in already, and the session
    # reads on for the rest instead of taking the part for a reply.
    plain = answers()

    def early(event: Any, server: ServerConnection) -> bytes | None:
        said = plain(event, server)
        if isinstance(event, CommandReceived) and event.step is Step.MAIL:
            return said + b"2"
        if isinstance(event, CommandReceived) and event.step is Step.RCPT:
            assert said is not None and said.startswith(b"2")
            return said[1:]
        return said

    outcome = converse(tmp_path, "", early)
    assert outcome.record["outcome"] == "ok" and outcome.record["messages_accepted"] == 1
    assert [code for label, _, code in outcome.steps() if label == "RCPT"] == [250]


def test_a_pipelined_group_the_kernel_takes_late_times_its_data_end_from_its_end(
    tmp_path: Path,
) -> None:
    # MAIL, RCPT and the BDAT chunks in one write that fills the socket buffer: its first
    # bytes taken at once, the rest 0.4 ms later. MAIL and RCPT are timed from the write's
    # start, the message's last chunk (its DATA end) from when the kernel took its last
    # byte (no earlier message's content went first, whose end would be noted apart).
    outcome = converse(
        tmp_path,
        '[session]\nchunking = true\npipelining = true\nchunk_size = 40000\nsize = "64KiB"\n',
        wire=lambda clock: Wire(clock, 60000, 0.0004, taken=100),
    )
    steps = {label: s for label, s, _ in outcome.steps()}
    assert steps["MAIL"] == pytest.approx(THINK, abs=1e-9)
    assert steps["RCPT"] == pytest.approx(THINK, abs=1e-9)
    assert steps["DATA end"] == pytest.approx(THINK - 0.0004, abs=1e-9)
    assert outcome.record["messages_accepted"] == 1


def test_a_server_that_hangs_up_in_a_pipelined_group_is_named_at_the_reply_awaited(
    tmp_path: Path,
) -> None:
    outcome = converse(tmp_path, "[session]\npipelining = true\n", answers(RCPT=(0, "", None)))
    record = outcome.record
    assert record["error"] == "closed by server" and record["error_step"] == "RCPT"
    assert "awaiting RCPT" in outcome.snapshot().failures[-1].detail


def test_a_refused_recipient_is_skipped_and_all_refused_is_rset(tmp_path: Path) -> None:
    some = converse(
        tmp_path,
        "[session]\nrecipients = 2\n",
        answers(RCPT=[(550, "no", "5.1.1"), (250, "ok", None)]),
    )
    assert some.codes("RCPT") == [550, 250]
    assert some.record["messages_accepted"] == 1
    assert some.record["error"] == "unexpected reply" and some.record["error_step"] == "RCPT"
    assert some.recorder.recipients_rejected == 1 and some.recorder.recipients_accepted == 1
    none = converse(tmp_path, "[session]\nrecipients = 2\n", answers(RCPT=(550, "no", "5.1.1")))
    assert none.labels()[-2:] == ["RSET", "QUIT"]
    assert none.codes("DATA") == [] and none.record["messages_rejected"] == 1


def test_a_refused_mail_ends_the_transaction_not_the_session(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        "[session]\nmessages = 2\n",
        answers(MAIL=[(451, "later", "4.3.0"), (250, "ok", None)]),
    )
    assert outcome.codes("MAIL") == [451, 250]
    assert outcome.record["messages_rejected"] == 1 and outcome.record["messages_accepted"] == 1
    assert outcome.record["outcome"] == "failed"  # a reply not counted as success


def test_421_ends_the_session_without_quit(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path, "[session]\nmessages = 2\n", answers(RCPT=(421, "closing", "4.3.2"))
    )
    assert outcome.labels()[-1] == "RCPT" and "QUIT" not in outcome.labels()
    assert outcome.record["detail"].startswith("421")
    # The first message was begun (its MAIL went out) and never ended; the second never began.
    assert outcome.record["messages_aborted"] == 1
    assert outcome.record["messages_rejected"] == 0


def test_end_of_file_in_the_data_is_a_closed_connection_and_an_aborted_message(
    tmp_path: Path,
) -> None:
    outcome = converse(tmp_path, "", answers(DATA_END=(0, "", None)))
    record = outcome.record
    assert record["error"] == "closed by server" and record["error_step"] == "DATA end"
    assert record["messages_aborted"] == 1
    failure = outcome.snapshot().failures[-1]
    assert failure.transcript[-1].sent.startswith("(message content")
    assert failure.transcript[-1].reply == ""


def test_a_reset_told_at_the_connect_is_a_connection_reset_before_the_banner(
    tmp_path: Path,
) -> None:
    # A server that resets every connection as it accepts it: the reset may be told at the
    # connect (the kernel saw it before the connect was known to be done) or at the first
    # read. It is the same server either way: connected, then reset before the banner, so
    # a run against it never reads "no session ever connected".
    for throw_at in ((0, ConnectionResetError(104, "reset")), (1, ConnectionResetError(104, "r"))):
        outcome = converse(tmp_path, "", throw_at=throw_at)
        record = outcome.record
        assert record["error"] == "connection reset" and record["error_step"] == "banner"
        assert [label for label, _, _ in outcome.steps()][:1] == ["connect"]


def test_a_timeout_names_the_step_and_its_limit(tmp_path: Path) -> None:
    # The third read awaits MAIL's reply (after the banner's and EHLO's): it never comes.
    outcome = converse(tmp_path, "", throw_at=(3, StepTimeout()))
    assert outcome.record["error"] == "timeout" and outcome.record["error_step"] == "MAIL"
    assert outcome.record["detail"] == "no reply to MAIL within 300s"


def test_a_session_cut_at_the_end_of_the_run_is_cancelled(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", throw_at=(3, SessionCancelled()))
    assert outcome.record["error"] == "cancelled at stop"
    assert outcome.snapshot().errors_by_class() == {ErrorClass.CANCELLED: 1}


def test_ehlo_refused_falls_back_to_helo(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", answers(EHLO=(502, "what", "5.5.2")))
    assert outcome.labels()[2:4] == ["EHLO", "HELO"]
    assert outcome.record["messages_accepted"] == 1


def test_an_extension_asked_for_and_not_advertised_is_named(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "[session]\nsmtputf8 = true\n")
    assert outcome.record["error"] == "protocol error" and outcome.record["error_step"] == "EHLO"
    assert "SMTPUTF8 (session.smtputf8)" in outcome.record["detail"]
    assert outcome.labels()[-1] == "QUIT"


def test_bdat_chunks_and_the_last_one_is_the_data_end(tmp_path: Path) -> None:
    outcome = converse(tmp_path, '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n')
    assert outcome.labels().count("BDAT") == 2 and outcome.labels().count("DATA end") == 1
    assert outcome.record["messages_accepted"] == 1


def test_auth_plain_is_counted_and_hidden_in_the_transcript(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        '[auth]\nmechanism = "PLAIN"\nusername = "u"\npassword_env = "SECRET"\n',
        answers(AUTH=(535, "no", "5.7.8")),
    )
    assert outcome.codes("AUTH") == [535]
    failure = outcome.snapshot().failures[-1]
    assert any("credentials hidden" in line.sent for line in failure.transcript)
    assert not any("s3cret" in line.sent for line in failure.transcript)
