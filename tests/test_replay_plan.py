"""What a replay sends and when, before anything is sent: the schedule of recorded offsets,
merging, gaps, passes, rates, unique envelopes and the dry-run report."""

from __future__ import annotations

import math

import pytest

from smtpbench.engine.replay import ReplayJob, ReplayPlanner, ReplaySchedule, step_of, wire_bytes
from smtpbench.engine.replay_plan import (
    dry_run,
    make_unique,
    merge,
    offsets,
    stand_in_content,
    tag_address,
)
from smtpbench.protocol.steps import Step
from smtpbench.recording import RecordedReply, RecordedSession, RecordedStep, Recording
from smtpbench.recording.codec import content_of
from smtpbench.recording.model import RecordingHeader

OK = (RecordedReply(250, ("Ok",), 0.0),)


def cmd(line: bytes, at: float = 0.0, **kw: object) -> RecordedStep:
    replies = kw.pop("replies", (RecordedReply(250, ("Ok",), at + 0.001),))
    return RecordedStep("command", at, line, replies=replies, **kw)  # type: ignore[arg-type]


def session(number: int, start: float, duration: float = 0.5, steps: tuple = ()) -> RecordedSession:
    banner = RecordedStep("banner", replies=(RecordedReply(220, ("hi",), 0.001),))
    return RecordedSession(number, start, "c", (banner, *steps), duration)


def recording(epoch: float, *sessions: RecordedSession, path: str = "r.jsonl") -> Recording:
    return Recording(RecordingHeader("proxy", epoch, ""), sessions, path)


def test_the_schedule_divides_recorded_offsets_by_the_speed() -> None:
    schedule = ReplaySchedule([0.0, 1.0, 3.0, 6.0], speed=2.0)
    assert [schedule.next_due() for _ in range(4)] == [0.0, 0.5, 1.5, 3.0]
    assert math.isinf(schedule.peek())


def test_a_new_factor_applies_from_where_it_changes() -> None:
    schedule = ReplaySchedule([0.0, 1.0, 2.0, 3.0, 4.0], speed=1.0)
    assert schedule.next_due() == 0.0 and schedule.next_due() == 1.0
    schedule.set_factor(2.0, at=1.0)  # twice as fast from t=1
    assert schedule.factor == 2.0
    assert [schedule.next_due() for _ in range(3)] == [1.5, 2.0, 2.5]
    assert schedule.rate_at(2.0) == pytest.approx(2.0)


def test_recordings_merge_by_absolute_time() -> None:
    a = recording(1000.0, session(0, 0.0), session(1, 2.0))
    b = recording(1001.0, session(0, 0.0), session(1, 0.5))
    timeline = merge([a, b])
    assert [(t.offset, t.source, t.session.number) for t in timeline.sessions] == [
        (0.0, 0, 0),
        (1.0, 1, 0),
        (1.5, 1, 1),
        (2.0, 0, 1),
    ]
    assert timeline.length == pytest.approx(2.5)  # the last one ends 0.5 s after it starts


def test_max_gap_caps_pauses_between_sessions() -> None:
    timeline = merge([recording(0.0, session(0, 0.0), session(1, 100.0), session(2, 101.0))], 5.0)
    assert [t.offset for t in timeline.sessions] == [0.0, 5.0, 6.0]


def test_passes_follow_each_other_and_a_rate_spaces_every_session() -> None:
    timeline = merge([recording(0.0, session(0, 0.0), session(1, 1.0))])
    assert offsets(timeline, 2, None) == [0.0, 1.0, 1.5, 2.5]
    assert offsets(timeline, 2, 4.0) == [0.0, 0.25, 0.5, 0.75]


def test_the_planner_hands_out_passes_in_order() -> None:
    timeline = merge([recording(0.0, session(0, 0.0), session(1, 1.0))])
    planner = ReplayPlanner(ReplayJob(("r",), loop=2), timeline, seed=1)
    plans = [planner.plan_session(n) for n in range(4)]
    assert [(p.pass_number, p.source.number) for p in plans] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_unique_tags_envelopes_and_message_ids_and_keeps_sizes_right() -> None:
    message = b"From: a@b.test\r\nMessage-ID: <id1@b.test>\r\n\r\nBody with Message-ID: <x@y>\r\n"
    steps = (
        cmd(b"MAIL FROM:<a@b.test> SIZE=%d BODY=8BITMIME" % len(message)),
        cmd(b"RCPT TO:<c@d.test> NOTIFY=NEVER"),
        cmd(b"RCPT TO:<postmaster>"),
        cmd(b"DATA", replies=(RecordedReply(354, ("go",)),)),
        RecordedStep("data", content=content_of(message, True), replies=OK),
        cmd(b"MAIL FROM:<>"),
        cmd(b"RCPT TO:<e@f.test>"),
        cmd(b"BDAT %d LAST" % len(message), content=content_of(message, True)),
    )
    tagged = make_unique(steps, "p1")
    assert tagged[0].line is not None and tagged[0].line.startswith(b"MAIL FROM:<a+p1@b.test>")
    assert tagged[1].line == b"RCPT TO:<c+p1@d.test> NOTIFY=NEVER"
    assert tagged[2].line == b"RCPT TO:<postmaster>"
    data = tagged[4].content
    assert data is not None and data.data is not None
    assert b"Message-ID: <id1.p1@b.test>" in data.data
    assert data.data.endswith(b"Body with Message-ID: <x@y>\r\n")  # the body is left alone
    assert tagged[0].line.endswith(b"SIZE=%d BODY=8BITMIME" % len(data.data))
    assert tagged[5].line == b"MAIL FROM:<>"
    chunk = tagged[7].content
    assert chunk is not None and tagged[7].line == b"BDAT %d LAST" % chunk.size
    assert tag_address(b'"quoted local"@x.test', b"t") == b'"quoted local"@x.test'


def test_what_goes_on_the_wire() -> None:
    data = RecordedStep("data", content=content_of(b".dot\r\nend", True))
    assert wire_bytes(data, 0) == b"..dot\r\nend\r\n.\r\n"
    bare = RecordedStep("command", line=b"NOOP", bare_lf=True)
    assert wire_bytes(bare, 0) == b"NOOP\n"
    hashed = RecordedStep("data", content=content_of(b"x" * 5000, False))
    assert len(wire_bytes(hashed, 3)) == 5000 + 3  # a stand-in of the recorded size
    assert len(stand_in_content(100, 1)) == 100 and len(stand_in_content(5, 1)) == 5
    assert step_of(RecordedStep("command", line=b"BDAT 5 LAST")) is Step.DATA_END
    assert step_of(RecordedStep("command", line=b"HELP")) is None


def test_dry_run_counts_and_finds_what_is_out_of_order() -> None:
    good = session(
        0,
        0.0,
        1.0,
        (
            cmd(b"EHLO c", 0.01),
            cmd(b"MAIL FROM:<a@b>", 0.02),
            cmd(b"RCPT TO:<c@d>", 0.02, pipelined=True),
            cmd(b"DATA", 0.02, pipelined=True, replies=(RecordedReply(354, ("go",), 0.03),)),
            RecordedStep(
                "data",
                0.04,
                content=content_of(b"hello\r\n", True),
                replies=(RecordedReply(250, ("Ok",), 0.045),),
            ),
            cmd(b"QUIT", 0.05),
        ),
    )
    odd = session(1, 4.0, 1.0, (cmd(b"RCPT TO:<c@d>", 0.2), cmd(b"NOOP", 0.1)))
    report = dry_run([recording(0.0, good, odd)], speed=2.0, loop=2)
    assert (report.sessions, report.scheduled, report.messages) == (2, 4, 2)
    assert report.commands["RCPT"] == 4 and report.commands["DATA content"] == 2
    assert report.content_bytes == 14
    # Two passes of 5 s, at twice the speed: the last session starts at 4.5 s.
    assert report.schedule_span == pytest.approx(4.5)
    assert report.expected_duration == pytest.approx(5.0)
    assert len(report.problems) == 2
    assert "RCPT before an accepted MAIL" in report.problems[0]
    assert "before the step before it" in report.problems[1]


def test_bad_options() -> None:
    for bad in ({"speed": 0}, {"rate": -1.0}, {"loop": 0}, {"max_gap": 0.0}):
        with pytest.raises(ValueError):
            ReplayJob(("r",), **bad)  # type: ignore[arg-type]
