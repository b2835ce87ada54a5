"""The example recordings shipped in scenarios/recordings read, plan and replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from smtpbench.engine.replay import ReplayJob, replay_scenario
from smtpbench.engine.replay_plan import dry_run
from smtpbench.engine.transport import resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.recording import read_recording
from smtpbench.run.prepare import run_info
from smtpbench.scenario.model import Auth
from tests.recording_servers import sink
from tests.servers import LOOPBACK
from tests.test_replay_runs import replay

FOLDER = Path(__file__).resolve().parent.parent / "scenarios" / "recordings"
EXAMPLES = sorted(FOLDER.glob("*.jsonl"))


def test_there_are_examples_against_both_servers() -> None:
    names = {path.stem for path in EXAMPLES}
    for scenario in ("default", "newsletter-burst", "steady-relay", "slow-trickle"):
        assert {f"{scenario}-sink", f"{scenario}-aiosmtpd"} <= names
    assert "submission-sink" in names  # sessions that log in, credentials left out


def test_the_examples_are_made_by_the_script_beside_them(tmp_path: Path) -> None:
    script = [sys.executable, str(FOLDER / "record.py"), "--out", str(tmp_path)]
    done = subprocess.run(
        [*script, "--only", "submission"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "submission-sink.jsonl: 5 sessions"
    made = read_recording(tmp_path / "submission-sink.jsonl")
    shipped = read_recording(FOLDER / "submission-sink.jsonl")
    steps = [[(step.kind, step.line) for step in s.steps] for s in made.sessions]
    assert steps == [[(step.kind, step.line) for step in s.steps] for s in shipped.sessions]
    assert b"example-only" not in (tmp_path / "submission-sink.jsonl").read_bytes()


async def test_the_submission_example_logs_in_again_with_the_given_user() -> None:
    path = FOLDER / "submission-sink.jsonl"
    job = ReplayJob((str(path),), speed=20)
    async with sink(credentials=(("alice", "pw"),)) as server:
        timeline = job.timeline()
        scenario = replay_scenario(
            job, timeline, host=LOOPBACK, port=server.address[1], seed=1,
            auth=Auth(mechanism="PLAIN", username="alice", password="pw"),
        )  # fmt: skip
        address = await resolve(LOOPBACK, server.address[1])
        recorder = Recorder(job.run_info(run_info(scenario, str(address), 1), timeline))
        with trio.fail_after(60):
            snapshot = await job.load_run(scenario, address, 1, recorder, timeline=timeline).run()
        assert server.stats.replies_by_code[235] == 5
    assert snapshot.counters.failed == 0 and snapshot.counters.messages_accepted == 5
    assert snapshot.divergence is not None and snapshot.divergence[1].sum() == 0


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
