"""A replayed reply diverges when its enhanced status code differs from the recorded one
(both having one), not only its basic code: a recording made through the proxy from the
sink, edited so that its RCPT replies say ``250 2.1.0`` where the sink says ``250 2.1.5``,
replayed against that sink; the same recording untouched, and with its enhanced codes
removed, does not diverge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smtpbench.engine.replay import ReplayJob
from smtpbench.protocol.steps import Step
from tests.esmtp import esmtp_scenario
from tests.recording_servers import sink
from tests.test_replay_runs import record, replay

RECIPIENTS = 2


def edited(recording: Path, out: Path, change: Callable[[dict[str, Any]], None]) -> int:
    """A copy of ``recording`` with ``change`` applied to every RCPT reply; how many."""
    lines = recording.read_text().splitlines()
    changed = 0
    for index, line in enumerate(lines[1:], start=1):
        session = json.loads(line)
        for step in session["steps"]:
            if step.get("line", "").upper().startswith("RCPT"):
                for reply in step["replies"]:
                    change(reply)
                    changed += 1
        lines[index] = json.dumps(session)
    out.write_text("\n".join(lines) + "\n")
    return changed


def other_enhanced(reply: dict[str, Any]) -> None:
    assert reply["code"] == 250 and reply["enhanced"] == "2.1.5"  # as the sink says it
    reply["enhanced"] = "2.1.0"
    reply["lines"] = [text.replace("2.1.5", "2.1.0", 1) for text in reply["lines"]]


def no_enhanced(reply: dict[str, Any]) -> None:
    del reply["enhanced"]
    reply["lines"] = [text.removeprefix("2.1.5 ") for text in reply["lines"]]


async def test_a_differing_enhanced_code_counts_as_diverged(tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    recorded = await record(recording, lambda port: esmtp_scenario(port, recipients=RECIPIENTS))
    sessions = recorded.counters.started
    assert sessions > 0 and recorded.counters.failed == 0
    otherwise, bare = tmp_path / "otherwise.jsonl", tmp_path / "bare.jsonl"
    assert edited(recording, otherwise, other_enhanced) == RECIPIENTS * sessions
    assert edited(recording, bare, no_enhanced) == RECIPIENTS * sessions

    async with sink() as server:
        port = server.address[1]
        same = await replay(ReplayJob((str(recording),), speed=8), port)
        differs = await replay(ReplayJob((str(otherwise),), speed=8), port)
        unknown = await replay(ReplayJob((str(bare),), speed=8), port)

    rcpts = RECIPIENTS * sessions
    # Untouched: every code and enhanced code as recorded.
    assert same.divergence_of(Step.RCPT) == (rcpts, 0)
    # The same basic code, another enhanced one: every RCPT reply differs, nothing else.
    assert differs.divergence_of(Step.RCPT) == (rcpts, rcpts)
    assert differs.divergence_of(Step.MAIL) == (sessions, 0)
    assert differs.divergence_of(Step.DATA_END) == (sessions, 0)
    assert differs.reply_codes(Step.RCPT) == {250: rcpts}
    assert differs.enhanced_codes(Step.RCPT) == {"2.1.5": rcpts}
    assert differs.counters.messages_accepted == sessions  # the run itself went as recorded
    # The recording has no enhanced code to compare with: compared by the code alone.
    assert unknown.divergence_of(Step.RCPT) == (rcpts, 0)
