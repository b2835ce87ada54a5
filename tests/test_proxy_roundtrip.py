"""The round trip: a scenario through the recording proxy to aiosmtpd, the recording
replayed to a fresh aiosmtpd: the second server gets the same envelopes and bodies, byte
for byte, and every reply the replay got matches the recorded one."""

from __future__ import annotations

from pathlib import Path

import trio

from smtpbench.engine.replay import ReplayJob, replay_scenario
from smtpbench.engine.transport import resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.protocol.steps import Step
from smtpbench.recording import read_recording
from smtpbench.run.prepare import run_info
from tests.recording_servers import keeping_aiosmtpd, proxy_in_front, run_scenario, settle, varied
from tests.servers import LOOPBACK


async def test_round_trip_through_the_proxy_and_back(tmp_path: Path) -> None:
    out = tmp_path / "traffic.jsonl"
    with keeping_aiosmtpd() as (first_port, first):
        async with proxy_in_front(first_port, out) as proxy:
            snapshot = await run_scenario(varied(proxy.address[1]))
            await settle(proxy, snapshot.counters.started)
    assert snapshot.counters.failed == 0
    recording = read_recording(out)
    assert len(recording.sessions) == snapshot.counters.started == 20
    assert len(first.envelopes) == snapshot.counters.messages_accepted

    with keeping_aiosmtpd() as (second_port, second):
        job = ReplayJob((str(out),), speed=4)
        timeline = job.timeline()
        scenario = replay_scenario(job, timeline, host=LOOPBACK, port=second_port, seed=3)
        address = await resolve(LOOPBACK, second_port)
        recorder = Recorder(job.run_info(run_info(scenario, str(address), 3), timeline))
        with trio.fail_after(60):
            replayed = await job.load_run(scenario, address, 3, recorder, timeline=timeline).run()
        # The handler keeps each envelope before its 250 goes out: all are there.
        received = sorted(second.envelopes)
    assert received == sorted(first.envelopes)
    assert replayed.counters.failed == 0
    assert replayed.divergence is not None
    compared, differed = replayed.divergence.sum(axis=1)
    assert compared > 0 and differed == 0
    assert replayed.divergence_of(Step.RCPT)[0] == snapshot.counters.recipients_accepted
