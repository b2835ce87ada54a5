"""The example recordings shipped in scenarios/recordings read, plan and replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench.engine.replay import ReplayJob
from smtpbench.engine.replay_plan import dry_run
from smtpbench.recording import read_recording
from tests.recording_servers import sink
from tests.test_replay_runs import replay

FOLDER = Path(__file__).resolve().parent.parent / "scenarios" / "recordings"
EXAMPLES = sorted(FOLDER.glob("*.jsonl"))


def test_there_are_examples_against_both_servers() -> None:
    names = {path.stem for path in EXAMPLES}
    for scenario in ("default", "newsletter-burst", "steady-relay", "slow-trickle"):
        assert {f"{scenario}-sink", f"{scenario}-aiosmtpd"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_reads_and_has_nothing_out_of_order(path: Path) -> None:
    recording = read_recording(path)
    assert recording.sessions and recording.header.source == "proxy"
    report = dry_run([recording])
    assert report.problems == ()
    assert report.messages >= len(recording.sessions)


@pytest.mark.parametrize("name", ["default-sink", "slow-trickle-aiosmtpd"])
async def test_examples_replay_against_the_sink(name: str) -> None:
    path = FOLDER / f"{name}.jsonl"
    messages = sum(session.messages for session in read_recording(path).sessions)
    async with sink() as server:
        snapshot = await replay(ReplayJob((str(path),), speed=20), server.address[1])
    assert snapshot.counters.failed == 0
    assert snapshot.counters.messages_accepted == messages
    assert snapshot.divergence is not None and snapshot.divergence[1].sum() == 0
