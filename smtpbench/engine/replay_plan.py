"""What a replay sends and when, worked out before anything is sent: pure functions of
the recordings and the replay options, no clocks, no sockets.

- **Merge.** Several recordings become one timeline by absolute time: each
  session's start is its recording's ``epoch`` plus its ``start``; the merged
  timeline counts from the earliest session.
- **Gaps.** ``max_gap`` caps every pause: between one session's start and the
  next one's, and (in the session driver) between a reply and the client's next
  command.
- **Passes.** ``loop`` plays the timeline that many times; a pass lasts from its
  first session's start to the end of its last-ending session, and the next
  pass starts there.
- **Rate.** ``rate`` ignores the recorded starts and spaces every session of
  every pass ``1/rate`` apart.
- **Unique.** ``unique`` rewrites, per pass, the envelope addresses (a
  ``+tag`` on the local part) and the Message-ID header (``.tag`` before the
  ``@``), so a server that drops duplicates counts every message; SIZE and BDAT
  sizes follow the content's new length.

Offsets here are in recorded seconds; the schedule divides them by the speed.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from smtpbench.recording.model import (
    Content,
    RecordedSession,
    RecordedStep,
    Recording,
    is_message_end,
)

MIN_PASS = 0.001  # seconds: a pass of one instant session still takes this long


@dataclass(frozen=True, slots=True)
class TimedSession:
    """A recorded session placed on the merged timeline."""

    offset: float  # recorded seconds from the first session of the timeline
    session: RecordedSession
    source: int  # which recording (index in the list given)


@dataclass(frozen=True, slots=True)
class Timeline:
    sessions: tuple[TimedSession, ...]
    length: float  # recorded seconds one pass lasts


def merge(recordings: Sequence[Recording], max_gap: float | None = None) -> Timeline:
    """The sessions of every recording in order of their absolute start, gaps capped."""
    placed = sorted(
        (
            (recording.header.epoch + session.start, index, session.number, session)
            for index, recording in enumerate(recordings)
            for session in recording.sessions
        ),
        key=lambda item: item[:3],
    )
    sessions: list[TimedSession] = []
    end = 0.0
    first = placed[0][0] if placed else 0.0
    previous_absolute = first
    offset = 0.0
    for absolute, source, _, session in placed:
        gap = absolute - previous_absolute
        if max_gap is not None:
            gap = min(gap, max_gap)
        offset += gap
        previous_absolute = absolute
        sessions.append(TimedSession(offset, session, source))
        duration = (
            session.duration
            if max_gap is None
            else min(session.duration, _capped(session, max_gap))
        )
        end = max(end, offset + duration)
    length = max(end, sessions[-1].offset if sessions else 0.0, MIN_PASS)
    return Timeline(tuple(sessions), length)


def _capped(session: RecordedSession, max_gap: float) -> float:
    """The session's duration with its pauses capped at ``max_gap``."""
    total = 0.0
    last = 0.0
    for at in _times(session):
        total += min(max(0.0, at - last), max_gap)
        last = max(last, at)
    total += min(max(0.0, session.duration - last), max_gap)
    return total


def _times(session: RecordedSession) -> list[float]:
    times = []
    for step in session.steps:
        times.append(step.at)
        times.extend(reply.at for reply in step.replies)
    return sorted(times)


def offsets(timeline: Timeline, loop: int, rate: float | None) -> list[float]:
    """Each scheduled session's offset in recorded seconds, every pass in order."""
    count = len(timeline.sessions)
    if rate is not None:
        return [n / rate for n in range(count * loop)]
    return [p * timeline.length + timed.offset for p in range(loop) for timed in timeline.sessions]


def rate_around(due: Sequence[float], t: float, width: float) -> float:
    """Sessions per second due in the window of ``width`` seconds centred on ``t``
    (``due`` sorted)."""
    if width <= 0:
        return 0.0
    low = bisect.bisect_left(due, t - width / 2)
    high = bisect.bisect_left(due, t + width / 2)
    return (high - low) / width


# -- unique envelopes and Message-IDs ---------------------------------------------------

_PATH = re.compile(rb"^((?:MAIL\s+FROM|RCPT\s+TO):\s*<)([^>]*)(>.*)$", re.IGNORECASE | re.DOTALL)
_SIZE = re.compile(rb"(\sSIZE=)([0-9]+)", re.IGNORECASE)
_BDAT = re.compile(rb"^(BDAT\s+)([0-9]+)(.*)$", re.IGNORECASE | re.DOTALL)
_MESSAGE_ID = re.compile(rb"^(Message-ID:[ \t]*<[^>@\r\n]*)(@)", re.IGNORECASE | re.MULTILINE)


def tag_address(address: bytes, tag: bytes) -> bytes:
    """``local@domain`` -> ``local+tag@domain``; the null path and addresses without a
    domain or with a quoted local part stay as they are."""
    if not address or b"@" not in address or address.startswith(b'"'):
        return address
    local, _, domain = address.rpartition(b"@")
    if b":" in local:  # a source route (@a,@b:user@c): tag the mailbox only
        route, _, local = local.rpartition(b":")
        return route + b":" + local + b"+" + tag + b"@" + domain
    return local + b"+" + tag + b"@" + domain


def tag_line(line: bytes, tag: bytes) -> bytes:
    match = _PATH.match(line)
    if match is None:
        return line
    return match.group(1) + tag_address(match.group(2), tag) + match.group(3)


def tag_message_id(data: bytes, tag: bytes) -> bytes:
    """The Message-ID of the header block gets ``.tag`` before its ``@``."""
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[: head_end + 2]
    tagged, count = _MESSAGE_ID.subn(lambda m: m.group(1) + b"." + tag + m.group(2), head, 1)
    if not count:
        return data
    return tagged + (b"" if head_end < 0 else data[head_end + 2 :])


def _content(data: bytes) -> Content:
    return Content(len(data), hashlib.sha256(data).hexdigest(), data)


def make_unique(steps: Sequence[RecordedStep], tag: str) -> tuple[RecordedStep, ...]:
    """The steps with envelope addresses and Message-IDs tagged (see the module doc)."""
    raw_tag = tag.encode("ascii")
    out = list(steps)
    mail_at: int | None = None
    first_chunk = True
    delta = 0
    for index, step in enumerate(steps):
        if step.kind == "command" and step.line is not None:
            verb = step.verb
            if verb in ("MAIL", "RCPT"):
                if verb == "MAIL":
                    if mail_at is not None and delta:
                        out[mail_at] = _resize_mail(out[mail_at], delta)
                    mail_at, first_chunk, delta = index, True, 0
                out[index] = replace(step, line=tag_line(step.line, raw_tag))
                continue
            if verb == "BDAT" and step.content is not None and step.content.data is not None:
                if first_chunk:
                    new = tag_message_id(step.content.data, raw_tag)
                    change = len(new) - len(step.content.data)
                    if change:
                        match = _BDAT.match(step.line)
                        if match is not None:
                            size = str(int(match.group(2)) + change).encode()
                            line = match.group(1) + size + match.group(3)
                            out[index] = replace(step, line=line, content=_content(new))
                            delta += change
                first_chunk = False
                continue
        if step.kind == "data" and step.content is not None and step.content.data is not None:
            new = tag_message_id(step.content.data, raw_tag)
            if len(new) != len(step.content.data):
                out[index] = replace(step, content=_content(new))
                delta += len(new) - len(step.content.data)
        if is_message_end(step):
            if mail_at is not None and delta:
                out[mail_at] = _resize_mail(out[mail_at], delta)
            mail_at, delta = None, 0
    if mail_at is not None and delta:
        out[mail_at] = _resize_mail(out[mail_at], delta)
    return tuple(out)


def _resize_mail(step: RecordedStep, delta: int) -> RecordedStep:
    assert step.line is not None
    line = _SIZE.sub(lambda m: m.group(1) + str(int(m.group(2)) + delta).encode(), step.line, 1)
    return replace(step, line=line)


# -- content the recording did not keep ------------------------------------------------

_FILLER = (
    b"This message stands in for one whose content was not recorded; it has the recorded size.\r\n"
)


def stand_in_content(size: int, number: int) -> bytes:
    """A message of ``size`` bytes for a recording made with --no-content: a few
    headers and lines of filler, CRLF-ended."""
    head = (
        f"Subject: replayed message of {size} bytes\r\n"
        f"Message-ID: <replay.{number}.{size}@smtpbench.test>\r\n\r\n"
    ).encode()
    if size <= len(head) + 2:
        return head[: max(0, size - 2)] + b"\r\n" if size >= 2 else b""
    body_size = size - len(head)
    body = (_FILLER * (body_size // len(_FILLER) + 1))[:body_size]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n"
    return head + body


# -- dry run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRun:
    sessions: int  # in one pass
    passes: int
    scheduled: int  # sessions over every pass
    commands: Counter[str]  # by verb ("DATA content" for message content), every pass
    messages: int
    content_bytes: int
    schedule_span: float  # seconds from the first to the last session start, replayed
    expected_duration: float  # until the last session ends, replayed
    problems: tuple[str, ...]  # anything out of order


_SEQUENCE_RULES = {
    "RCPT": "RCPT before an accepted MAIL",
    "DATA": "DATA before an accepted RCPT",
}


def problems_of(session: RecordedSession, source: str) -> list[str]:
    """What looks out of order in one recorded session: times going back, replies before
    their command, commands out of SMTP sequence, replies nobody asked for."""
    found: list[str] = []
    where = f"{source} session {session.number}"
    last = 0.0
    mail = rcpt = quit_sent = False
    for index, step in enumerate(session.steps):
        if step.at + 1e-6 < last and step.kind != "unasked":
            found.append(f"{where} step {index}: sent at {step.at:.6f}s, before the step before it")
        last = max(last, step.at)
        for reply in step.replies:
            if reply.at + 1e-6 < step.at:
                found.append(f"{where} step {index}: reply at {reply.at:.6f}s before it was sent")
        if quit_sent and step.kind in ("command", "data"):
            found.append(f"{where} step {index}: {step.verb or step.kind} after QUIT")
        code = step.reply.code if step.reply is not None else None
        ok = code is not None and code < 400
        verb = step.verb
        if step.kind == "unasked":
            found.append(f"{where} step {index}: a reply no command asked for ({code})")
        elif verb in ("MAIL",):
            mail, rcpt = ok, False
        elif verb == "RCPT":
            if not mail:
                found.append(f"{where} step {index}: {_SEQUENCE_RULES['RCPT']}")
            rcpt = rcpt or ok
        elif verb == "DATA":
            if not rcpt and code == 354:
                found.append(f"{where} step {index}: {_SEQUENCE_RULES['DATA']}")
        elif verb in ("RSET", "EHLO", "HELO", "LHLO") or is_message_end(step):
            mail = rcpt = False
        elif verb == "QUIT":
            quit_sent = True
    return found


def dry_run(
    recordings: Sequence[Recording],
    *,
    speed: float = 1.0,
    rate: float | None = None,
    loop: int = 1,
    max_gap: float | None = None,
) -> DryRun:
    timeline = merge(recordings, max_gap)
    commands: Counter[str] = Counter()
    messages = content = 0
    problems: list[str] = []
    for timed in timeline.sessions:
        session = timed.session
        problems.extend(problems_of(session, recordings[timed.source].path or "recording"))
        for step in session.steps:
            if step.kind == "command":
                commands[step.verb or "(empty line)"] += loop
            elif step.kind == "data":
                commands["DATA content"] += loop
            elif step.kind == "sasl":
                commands["SASL response"] += loop
            if step.content is not None:
                content += step.content.size * loop
            if is_message_end(step):
                messages += loop
    due = offsets(timeline, loop, rate)
    scale = 1.0 if rate is not None else speed  # a rate sets times in real seconds
    span = (due[-1] if due else 0.0) / scale
    durations = [
        timed.session.duration if max_gap is None else _capped(timed.session, max_gap)
        for timed in timeline.sessions
    ] * loop
    expected = max((s + d) / scale for s, d in zip(due, durations, strict=True)) if due else 0.0
    return DryRun(
        sessions=len(timeline.sessions),
        passes=loop,
        scheduled=len(due),
        commands=commands,
        messages=messages,
        content_bytes=content,
        schedule_span=span,
        expected_duration=expected,
        problems=tuple(problems),
    )
