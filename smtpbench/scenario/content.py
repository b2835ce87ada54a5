"""Planning sessions and building the messages they send, cheaply and reproducibly.

The scheduler asks for one ``SessionPlan`` per session, in order; the plan
fixes every random choice (counts, addresses, sizes, NOOPs), so a seed gives
the same traffic every run. ``message_bytes`` then builds the message from the
plan: a small header block formatted per message and a body sliced out of a
block of filler text made once per factory, so the cost per message is a few
string operations whatever its size.
"""

from __future__ import annotations

import bisect
import functools
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from smtpbench import __version__
from smtpbench.scenario.model import Scenario
from smtpbench.scenario.templates import Renderer
from smtpbench.transit.identity import header_line

if TYPE_CHECKING:
    from smtpbench.scenario.rich_content import RichContent

LINE_LIMIT: Final = 78
"""Body and header lines stay within RFC 5322's recommended 78 characters."""

_FILLER_SIZE: Final = 64 * 1024
# About one line in 40 starts with "." so that every message of a few KiB
# exercises dot-stuffing; which lines is fixed by the seed.
_DOT_LINE_ODDS: Final = 1 / 40
_MIN_BODY: Final = 32
_STATIC_HEADERS: Final = (
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    f"X-Mailer: smtpbench/{__version__}\r\n"
)
_TEXT: Final = (
    "the mail relay accepts each message from the queue and hands it on to the next hop "
    "while the sender waits for a reply code that says whether the transaction was taken "
    "a server under load answers more slowly and the queue grows until the backlog is full "
    "latency of every command is measured from the moment the last byte was written until "
    "the whole reply has arrived so that slow banners and slow data are told apart clearly "
    "this is a test message written by a load generator and nobody needs to read any of it "
    "envelope recipient domain header body transfer timeout retry deferred bounce delivered "
    "connection session greeting capability pipelining extension size limit policy filter"
)
_WORDS: Final = tuple(_TEXT.split())
# For 8BITMIME bodies: UTF-8 words, two to four bytes a character, now and then.
_WORDS_8BIT: Final = (
    *_WORDS, "grüße", "naïve", "café", "smørrebrød", "façade", "zażółć", "ελληνικά", "русский",
    "日本語", "中文", "한국어", "emoji🙂",
)  # fmt: skip
_HEADERS_8BIT: Final = (
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    f"X-Mailer: smtpbench/{__version__}\r\n"
)
_PART_HEADERS: Final = 80  # about what a text part's own headers take, for its size
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip


@dataclass(slots=True)
class MessagePlan:
    """One transaction: envelope, size in bytes, subject, and what to send before it.

    Not changed once made (``dataclasses.replace`` makes another), but not a frozen
    dataclass either: a frozen one's ``__init__`` sets each field through a Python-level
    call, and one plan is made per message of the run. The ``__init__`` is written out
    (the dataclass keeps it, with the fields' own order and defaults) so that a compiled
    build makes a plan without running the one ``dataclasses`` would generate."""

    mail_from: str
    recipients: tuple[str, ...]
    size: int
    subject: str
    rset_before: bool
    noop_before: bool
    envid: str | None = None  # the DSN envelope id, when the scenario asks for one
    # [content]: the extra headers rendered, the kind of the mix (-1: none), an
    # attachment's (first line in the block, size), the corpus message (-1: none).
    headers: tuple[tuple[str, str], ...] = ()
    mix: int = -1
    attachment: tuple[int, int] | None = None
    corpus: int = -1

    def __init__(
        self,
        mail_from: str,
        recipients: tuple[str, ...],
        size: int,
        subject: str,
        rset_before: bool,
        noop_before: bool,
        envid: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        mix: int = -1,
        attachment: tuple[int, int] | None = None,
        corpus: int = -1,
    ) -> None:
        self.mail_from = mail_from
        self.recipients = recipients
        self.size = size
        self.subject = subject
        self.rset_before = rset_before
        self.noop_before = noop_before
        self.envid = envid
        self.headers = headers
        self.mix = mix
        self.attachment = attachment
        self.corpus = corpus


@dataclass(slots=True)
class SessionPlan:
    """One connection: its number (from 0), the HELO/EHLO name and its transactions.

    Not changed once made; not frozen, and its ``__init__`` written out, for the reason
    ``MessagePlan`` gives: one is made per session of the run."""

    number: int
    helo_name: str
    messages: tuple[MessagePlan, ...]

    def __init__(self, number: int, helo_name: str, messages: tuple[MessagePlan, ...]) -> None:
        self.number = number
        self.helo_name = helo_name
        self.messages = messages


def run_seed(scenario: Scenario) -> int:
    """The seed a run of ``scenario`` uses: the scenario's, else a fresh random one."""
    return scenario.seed if scenario.seed is not None else secrets.randbits(63)


class MessageFactory:
    """Plans sessions and builds messages for one run of one scenario.

    ``seed`` defaults to the scenario's, and to a fresh random one when neither
    is set; ``.seed`` tells which was used, so a run can be repeated. ``clock``
    gives the time for the Date header (tests fix it to compare bytes).
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
        transit_tag: str | None = None,
    ) -> None:
        if seed is None:
            seed = run_seed(scenario)
        self.seed: int = seed
        self.scenario = scenario
        session = scenario.session
        self._rng = random.Random(seed)
        self._helo = Renderer(session.helo_name, self._rng)
        self._mail_from = Renderer(session.mail_from, self._rng)
        self._rcpt_to = Renderer(session.rcpt_to, self._rng)
        self._subject = Renderer(session.subject, self._rng)
        self._clock = clock
        self._date_second = -1
        self._date = ""
        # The seed in every Message-ID keeps IDs apart across runs, unless seeded alike.
        self._id_prefix = f"smtpbench.{seed:x}"
        # run --through: every message names itself (the run's id, session, message) in an
        # X-Smtpbench-Id header, so the receiving sink can match it to its send.
        self.transit_tag = transit_tag
        eight_bit = session.body == "8bitmime" or session.smtputf8
        self._filler, self._line_starts, self._dot_lines = _filler(seed, eight_bit)
        # For each line of the filler, the first of its dot lines at it or after it.
        self._next_dot = [bisect.bisect_left(self._dot_lines, at) for at in self._line_starts]
        self._domain_of = self._domain = ""  # the last sender's domain, for Message-IDs
        self._static_headers = _HEADERS_8BIT if eight_bit else _STATIC_HEADERS
        self._header_encoding = "utf-8" if session.smtputf8 else "ascii"
        self._eight_bit = eight_bit
        envid = session.dsn.envid
        self._envid = Renderer(envid, self._rng) if envid is not None else None
        self._rich: RichContent | None = None
        if not scenario.content.is_plain:
            # Imported only here: it reads mailboxes and signs with DKIM, and a run of
            # generated messages would pay for its imports at every start.
            from smtpbench.scenario.rich_content import RichContent

            self._rich = RichContent(scenario.content, seed)
        self._header_renderers = tuple(
            (name, Renderer(value, self._rng)) for name, value in scenario.content.headers
        )
        self._body_renderer = (
            Renderer(scenario.content.body_template, self._rng)
            if scenario.content.body_template is not None
            else None
        )

    def plan_session(self, number: int) -> SessionPlan:
        """The plan for session ``number``; call in order for reproducible plans."""
        session = self.scenario.session
        rng = self._rng
        count = session.messages.pick(rng)
        messages = []
        senders, listed = session.senders, session.recipients_list
        # Looked up once: this loop runs for every message of the run. The renderers are
        # kept, not their bound methods: a compiled build calls their method directly.
        from_renderer, to_renderer = self._mail_from, self._rcpt_to
        subject_renderer = self._subject
        pick_recipients, sample_size = session.recipients.pick, session.size.sample
        # A fixed count or size draws nothing: known here, it costs no call per message.
        counts, sizes = session.recipients, session.size
        fixed_count = counts.low if counts.low == counts.high else -1
        fixed_size = sizes.low if sizes.kind == "fixed" else -1
        envid = self._envid
        rich = self._rich
        noop = session.noop
        rset = session.rset_between_messages
        # A sender that is the same for every message of the session is rendered once.
        session_from = (
            from_renderer.render(number, 0)
            if senders is None and from_renderer.per_session
            else None
        )
        for index in range(count):
            if session_from is not None:
                mail_from = session_from
            else:
                mail_from = (
                    from_renderer.render(number, index) if senders is None else senders.pick(rng)
                )
            wanted = fixed_count if fixed_count >= 0 else pick_recipients(rng)
            if listed is not None:
                recipients = tuple([listed.pick(rng) for _ in range(wanted)])
            elif wanted == 1:
                recipients = (to_renderer.render(number, index, 0),)
            else:
                recipients = tuple(
                    [to_renderer.render(number, index, rcpt) for rcpt in range(wanted)]
                )
            plan = MessagePlan(
                mail_from,
                recipients,
                fixed_size if fixed_size >= 0 else sample_size(rng),
                subject_renderer.render(number, index),
                rset and index > 0,
                noop >= 1.0 or (noop > 0.0 and rng.random() < noop),
                envid.render(number, index) if envid is not None else None,
            )
            if rich is not None:  # draws only when [content] asks: plain runs repeat
                plan = rich.plan(plan, rng, self._rendered_headers(number, index))
            messages.append(plan)
        return SessionPlan(number, self._helo.render(number), tuple(messages))

    def _rendered_headers(self, number: int, index: int) -> tuple[tuple[str, str], ...]:
        return tuple((name, r.render(number, index)) for name, r in self._header_renderers)

    def message_bytes(self, session: SessionPlan, message_no: int) -> bytes:
        """Message ``message_no`` of ``session`` as RFC 5322 text with CRLF line ends.

        Not dot-stuffed: the protocol layer does that as it sends. The length is
        the planned size, unless the header block alone is larger (many
        recipients and a small size), when it is the headers and one short line.
        """
        return self.message_to_send(session, message_no)[0]

    def message_to_send(
        self, session: SessionPlan, message_no: int
    ) -> tuple[bytes, tuple[int, ...] | None]:
        """``message_bytes``, and where its lines that start with "." start (what DATA
        has to dot-stuff), or None when that is not known. A generated text message's
        header lines never do, and where the body's lines that do lie in the filler is
        known, so DATA need not look through every message for them."""
        if self._rich is not None:
            return self._rich_message(session, message_no), None
        plan = session.messages[message_no]
        mail_from = plan.mail_from
        if mail_from != self._domain_of:  # most often the session's sender, every message
            self._domain_of, self._domain = mail_from, mail_from.rpartition("@")[2]
        head = (
            f"From: {mail_from}\r\n"
            f"To: {_address_list(plan.recipients)}\r\n"
            f"Subject: {plan.subject}\r\n"
            f"Date: {self._now()}\r\n"
            f"Message-ID: <{self._id_prefix}.{session.number}.{message_no}@{self._domain}>\r\n"
            f"{self._transit_header(session.number, message_no)}"
            f"{self._static_headers}\r\n"
        ).encode(self._header_encoding)
        length = max(plan.size - len(head), _MIN_BODY)
        line = self._body_line(session.number, message_no)
        start = self._line_starts[line]
        end = start + length
        # Where the filler repeats, where its dot lines fall is not worked out.
        dots = self._dots(len(head), line, end) if end <= len(self._filler) else None
        return self._body(length, start, head), dots

    def _rich_message(self, session: SessionPlan, message_no: int) -> bytes:
        """A message of the ``[content]`` table: a corpus message, a kind of the mix, or a
        text message with extra headers or a body of its own; signed if asked."""
        rich = self._rich
        assert rich is not None
        plan = session.messages[message_no]
        domain = plan.mail_from.rpartition("@")[2]
        extra = "".join(f"{name}: {value}\r\n" for name, value in plan.headers)
        ids = (
            f"Date: {self._now()}\r\n"
            f"Message-ID: <{self._id_prefix}.{session.number}.{message_no}@{domain}>\r\n"
            f"{self._transit_header(session.number, message_no)}"
        )
        encoding = self._header_encoding
        if plan.corpus >= 0:
            original = rich.corpus[plan.corpus]
            message = (ids + extra).encode(encoding) + original.headers + b"\r\n" + original.body
            return rich.signed(message)
        top = (
            f"From: {plan.mail_from}\r\n"
            f"To: {_address_list(plan.recipients)}\r\n"
            f"Subject: {plan.subject}\r\n"
            f"{ids}{extra}MIME-Version: 1.0\r\n"
        ).encode(encoding)
        text = rich.text(self._body_renderer, session.number, message_no)
        if text is None:
            size = plan.size - len(top) - _PART_HEADERS
            start = self._body_start(session.number, message_no)
            text = rich.with_test_line(self._body(size, start))
        if plan.mix >= 0:
            part_headers, body = rich.mime.body(plan.mix, text, plan.attachment)
        else:
            part_headers, body = rich.text_headers_for(text), text
        return rich.signed(top + part_headers + b"\r\n" + body)

    def _transit_header(self, session_no: int, message_no: int) -> str:
        if self.transit_tag is None:
            return ""
        return header_line(self.transit_tag, session_no, message_no)

    def _body_line(self, session_no: int, message_no: int) -> int:
        """The line of the filler a message's body starts at, which differs from message
        to message."""
        return (session_no * 7919 + message_no * 131) % len(self._line_starts)

    def _body_start(self, session_no: int, message_no: int) -> int:
        """Where in the filler a message's body starts (``_body_line``'s start)."""
        return self._line_starts[self._body_line(session_no, message_no)]

    def _dots(self, offset: int, line: int, end: int) -> tuple[int, ...]:
        """Where the lines of the filler from the start of ``line`` to ``end`` (as
        ``_body`` cuts them) that start with "." start, in a message where the body is at
        ``offset``."""
        dots = self._dot_lines
        first = self._next_dot[line]
        # _body ends on the CRLF it puts at end - 2: a line starting there or later goes.
        if first == len(dots) or dots[first] >= end - 2:  # most often
            return ()
        start = self._line_starts[line]
        found = []
        for at in dots[first:]:
            if at >= end - 2:
                break
            found.append(offset + at - start)
        return tuple(found)

    def _body(self, length: int, start: int, head: bytes = b"") -> bytes:
        """``head``, then ``length`` bytes of filler (``_MIN_BODY`` at least) from
        ``start`` (``_body_start``), ending on CRLF: most messages in one copy."""
        length = max(length, _MIN_BODY)
        filler = self._filler
        end = start + length
        if end <= len(filler):
            if filler[end - 3] != 13 and not self._eight_bit:  # the cut needs no mending
                return b"".join([head, filler[start : end - 2], b"\r\n"])
            body = filler[start:end]
        else:
            repeats = (end - len(filler)) // len(filler) + 1
            body = (filler[start:] + filler * repeats)[:length]
        # End on CRLF without adding a bare CR: the cut may fall inside a "\r\n".
        if body[-3] == 13:  # b"\r"
            return head + body[:-3] + b"x\r\n"
        if self._eight_bit:
            return head + _whole_characters(body[:-2]) + b"\r\n"
        return head + body[:-2] + b"\r\n"

    def _now(self) -> str:
        """RFC 5322 date, formatted once per second since every message wants one."""
        second = int(self._clock())
        if second != self._date_second:
            t = time.gmtime(second)
            self._date = (
                f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
            )
            self._date_second = second
        return self._date


def _address_list(addresses: tuple[str, ...]) -> str:
    """``a, b, c``, folded onto continuation lines before ``LINE_LIMIT``."""
    if len(addresses) == 1:
        return addresses[0]
    lines: list[str] = []
    line = "To:"  # the header name counts towards the first line's length
    for index, address in enumerate(addresses):
        item = address + ("," if index < len(addresses) - 1 else "")
        if len(line) + 1 + len(item) > LINE_LIMIT and line not in ("To:", ""):
            lines.append(line)
            line = ""
        line = f"{line} {item}"
    lines.append(line)
    return "\r\n".join(lines)[len("To: ") :]


def _whole_characters(text: bytes) -> bytes:
    """UTF-8 ``text`` whose end may cut a character in two: the cut bytes become "x"."""
    start = len(text) - 1
    while start >= 0 and text[start] & 0xC0 == 0x80:  # continuation bytes
        start -= 1
    if start < 0 or text[start] < 0xC0:
        return text
    lead = text[start]
    length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    if len(text) - start >= length:
        return text
    return text[:start] + b"x" * (len(text) - start)


@functools.lru_cache(maxsize=8)
def _filler(seed: int, eight_bit: bool = False) -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
    """A block of readable text lines, CRLF-ended, where each line starts, and where each
    line that starts with "." starts; with ``eight_bit`` some words are UTF-8 beyond ASCII
    (line lengths count characters)."""
    words = _WORDS_8BIT if eight_bit else _WORDS
    rng = random.Random(f"filler:{seed}" if not eight_bit else f"filler8:{seed}")
    lines: list[str] = []
    size = 0
    while size < _FILLER_SIZE:
        width = rng.randint(50, LINE_LIMIT - 2)
        line = rng.choice(words).capitalize()
        while True:
            word = rng.choice(words)
            if len(line) + 1 + len(word) > width:
                break
            line = f"{line} {word}"
        line += "."
        if rng.random() < _DOT_LINE_ODDS:
            line = "." + line[: LINE_LIMIT - 1]
        lines.append(line)
        size += len(line.encode("utf-8")) + 2
    starts = []
    dots = []
    offset = 0
    for line in lines:
        starts.append(offset)
        if line.startswith("."):
            dots.append(offset)
        offset += len(line.encode("utf-8")) + 2
    return ("\r\n".join(lines) + "\r\n").encode("utf-8"), tuple(starts), tuple(dots)
