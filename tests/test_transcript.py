"""A failed session's transcript stays bounded and readable however long the session
ran: the opening, the lines up to the first failure, the end, and how many lines were
left out between them. Checked on the transcript itself and on sessions of the session
machine against the server state machine (no socket)."""

from __future__ import annotations

from pathlib import Path

from smtpbench.engine.transcript import LAST, OPENING, TRIM_AT, Transcript
from smtpbench.protocol.replies import Reply
from tests.test_session_machine import answers, converse

OK = Reply(250, ("ok",))


def filled(count: int) -> Transcript:
    """A transcript of ``count`` lines, named "line N", trimmed as the session trims it."""
    transcript = Transcript()
    for number in range(count):
        transcript.lines.append((f"line {number}", OK))
        if len(transcript.lines) > TRIM_AT:
            transcript.trim()
    return transcript


def sent(transcript: Transcript) -> list[str]:
    return [line.sent for line in transcript.rendered()]


def test_a_short_transcript_is_kept_whole() -> None:
    transcript = filled(TRIM_AT)
    assert sent(transcript) == [f"line {n}" for n in range(TRIM_AT)]


def test_a_long_transcript_keeps_its_opening_and_its_end() -> None:
    transcript = filled(10_000)
    shown = sent(transcript)
    left_out = 10_000 - OPENING - LAST
    assert shown == [
        *(f"line {n}" for n in range(OPENING)),
        f"({left_out:,} lines of this session left out)",
        *(f"line {n}" for n in range(10_000 - LAST, 10_000)),
    ]
    assert len(transcript.lines) <= TRIM_AT  # memory: bounded while the session runs


def test_the_lines_up_to_the_first_failure_are_kept_and_the_end_after_them() -> None:
    transcript = filled(5_000)
    transcript.failure_noted()  # "line 4999" failed
    for number in range(5_000, 9_000):
        transcript.lines.append((f"line {number}", OK))
        if len(transcript.lines) > TRIM_AT:
            transcript.trim()
    transcript.failure_noted()  # a later failure keeps nothing more
    shown = sent(transcript)
    assert shown[:OPENING] == [f"line {n}" for n in range(OPENING)]
    before = 5_000 - OPENING - LAST
    assert shown[OPENING] == f"({before:,} lines of this session left out)"
    failure = shown[OPENING + 1 : OPENING + 1 + LAST]
    assert failure == [f"line {n}" for n in range(5_000 - LAST, 5_000)]
    after = 4_000 - LAST
    assert shown[OPENING + 1 + LAST] == f"({after:,} lines of this session left out)"
    assert shown[OPENING + 2 + LAST :] == [f"line {n}" for n in range(9_000 - LAST, 9_000)]


def test_a_failure_early_in_a_short_session_keeps_everything() -> None:
    transcript = filled(20)
    transcript.failure_noted()
    transcript.lines.append(("after", OK))
    assert sent(transcript) == [*(f"line {n}" for n in range(20)), "after"]


def test_one_line_left_out_is_said_in_the_singular() -> None:
    transcript = filled(OPENING + LAST + 1)
    transcript.failure_noted()
    assert "(1 line of this session left out)" in sent(transcript)


def test_a_long_session_that_fails_shows_the_failing_reply_within_the_bound(
    tmp_path: Path,
) -> None:
    """300 messages on one connection, the 200th refused at MAIL: the transcript shows
    the greeting, the refusal and the session's end, not 1,200 lines."""
    refusals = [(250, "ok", "2.1.0")] * 199 + [(451, "try later", "4.3.0")]
    refusals += [(250, "ok", "2.1.0")]
    outcome = converse(tmp_path, "[session]\nmessages = 300\n", answers(MAIL=refusals))
    failure = outcome.snapshot().failures[-1]
    shown = [line.sent for line in failure.transcript]
    replies = [line.reply for line in failure.transcript]
    assert len(shown) <= OPENING + 2 * LAST + 2
    assert shown[0] == "(connect)"
    assert shown[1].startswith("EHLO")
    refused = replies.index("451 4.3.0 try later")
    assert shown[refused].startswith("MAIL FROM:")
    assert shown[-1] == "QUIT" and replies[-1].startswith("221")
    assert any("lines of this session left out" in line for line in shown)
    assert outcome.record["messages_accepted"] == 299
