"""Replays as ordinary runs, against real servers on loopback: the command, results and
report, divergence, the server's own turns, passes with unique envelopes, timing against
absolute time, STARTTLS and AUTH, and the engine in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from smtpbench.cli import main
from smtpbench.engine.process import EngineJob, EngineProcess
from smtpbench.engine.replay import ReplayJob, replay_scenario
from smtpbench.engine.transport import resolve
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.kinds import START_LAG
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.run.prepare import run_info
from smtpbench.scenario import scenario_to_toml
from smtpbench.scenario.model import Auth, Tls
from tests.esmtp import esmtp_scenario, make_certs
from tests.recording_servers import (
    keeping_aiosmtpd,
    proxy_in_front,
    run_scenario,
    settle,
    sink,
    varied,
)
from tests.servers import LOOPBACK


async def record(out: Path, scenario_for_port, **sink_options: object) -> Snapshot:  # type: ignore[no-untyped-def]
    """Runs ``scenario_for_port(proxy_port)`` through the proxy to an in-process sink."""
    proxy_options = sink_options.pop("proxy", {})
    async with (
        sink(**sink_options) as server,
        proxy_in_front(server.address[1], out, **proxy_options) as proxy,  # type: ignore[arg-type]
    ):
        snapshot = await run_scenario(scenario_for_port(proxy.address[1]))
        await settle(proxy, snapshot.counters.started)
    return snapshot


async def replay(job: ReplayJob, port: int, seed: int = 1) -> Snapshot:
    timeline = job.timeline()
    scenario = replay_scenario(job, timeline, host=LOOPBACK, port=port, seed=seed)
    address = await resolve(LOOPBACK, port)
    recorder = Recorder(job.run_info(run_info(scenario, str(address), seed), timeline))
    with trio.fail_after(60):
        return await job.load_run(scenario, address, seed, recorder, timeline=timeline).run()


def test_the_replay_command_writes_results_and_report_shows_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "traffic.jsonl"
    trio.run(record, recording, varied)
    out = str(tmp_path / "results")
    assert main(["replay", str(recording), "--speed", "4", "--headless", "--out", out]) == 0
    folder = next((tmp_path / "results").iterdir())
    assert folder.name.endswith("replay-traffic")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["info"]["mode"] == "replay"
    assert summary["info"]["planned_sessions"] == 20
    assert summary["counters"]["started"] == 20 and summary["counters"]["failed"] == 0
    divergence = summary["divergence"]
    assert divergence["MAIL"]["compared"] >= 20 and divergence["MAIL"]["differed"] == 0
    capsys.readouterr()
    assert main(["report", str(folder)]) == 0
    assert "Divergence from the recording" in capsys.readouterr().out


async def test_dry_run_sends_nothing_and_a_bad_recording_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "traffic.jsonl"
    await record(recording, varied)
    assert main(["replay", str(recording), "--dry-run", "--loop", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20 x 3 passes = 60 scheduled" in out and "expected duration" in out
    assert not any(tmp_path.glob("*replay*"))
    lines = recording.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]
    recording.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(recording), "--dry-run"]) == 2
    assert f"{recording}:4: not valid JSON" in capsys.readouterr().err


async def test_divergence_when_the_server_answers_otherwise(tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    recorded = await record(recording, lambda port: esmtp_scenario(port, recipients=2))
    sessions = recorded.counters.started
    refusing = parse_fault_table({"reply": {"RCPT": "550:100%"}})
    async with sink(faults=refusing) as server:
        snapshot = await replay(ReplayJob((str(recording),), speed=8), server.address[1])
    assert snapshot.divergence_of(Step.RCPT) == (2 * sessions, 2 * sessions)
    assert snapshot.divergence_of(Step.MAIL) == (sessions, 0)
    # DATA was refused (no valid recipient): the recorded content was not sent.
    assert snapshot.divergence_of(Step.DATA) == (sessions, sessions)
    assert snapshot.divergence_of(Step.DATA_END) == (0, 0)
    assert snapshot.counters.messages_rejected == sessions
    assert snapshot.counters.messages_accepted == 0 and snapshot.counters.messages_aborted == 0
    assert snapshot.reply_codes(Step.QUIT) == {221: sessions}


async def test_passes_with_unique_envelopes_all_count(tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    recorded = await record(recording, varied)
    with keeping_aiosmtpd() as (port, handler):
        job = ReplayJob((str(recording),), speed=8, loop=2, unique=True)
        snapshot = await replay(job, port)
        # The handler keeps each envelope before its 250 goes out: all are there.
        envelopes = list(handler.envelopes)
    assert snapshot.counters.messages_accepted == 2 * recorded.counters.messages_accepted
    assert len(envelopes) == 2 * recorded.counters.messages_accepted
    ids = [
        line
        for _, _, data in envelopes
        for line in data.split(b"\r\n")
        if line.startswith(b"Message-ID")
    ]
    assert len(ids) == len(set(ids)) == len(envelopes)
    senders = {sender for sender, _, _ in envelopes}
    assert any("p0@" in s for s in senders) and any("p1@" in s for s in senders)


async def test_sessions_start_on_the_recorded_schedule(tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    await record(recording, lambda port: esmtp_scenario(port, load={"rate": 10, "duration": 2}))
    async with sink() as server:
        began = trio.current_time()
        snapshot = await replay(ReplayJob((str(recording),), speed=4), server.address[1])
        took = trio.current_time() - began
    planned = snapshot.info.planned_duration
    assert planned is not None and 0.4 < planned < 0.6  # 1.9 s of starts at 4x
    assert took >= planned  # never ahead of the recording
    assert snapshot.histogram(START_LAG).count == 20  # every start measured against its time
    assert snapshot.counters.started == 20 and snapshot.counters.failed == 0


async def test_starttls_and_auth_are_replayed(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
    recording = tmp_path / "traffic.jsonl"

    def scenario(port: int):  # type: ignore[no-untyped-def]
        return esmtp_scenario(
            port,
            tls=Tls(mode="starttls", verify=False),
            auth=Auth(mechanism="PLAIN", username="u", password="p"),
            load={"sessions": 4, "rate": 20},
        )

    recorded = await record(recording, scenario, **tls, proxy=tls)
    assert recorded.counters.failed == 0
    async with sink(**tls) as server:
        snapshot = await replay(ReplayJob((str(recording),), speed=8), server.address[1])
    assert snapshot.histogram(Step.TLS).count == 4
    assert server.stats.tls_sessions == 4
    # The credentials were not recorded: AUTH goes out bare and is cancelled, and differs.
    compared, differed = snapshot.divergence_of(Step.AUTH)
    assert compared >= 4 and differed >= 4
    assert snapshot.counters.messages_accepted == 4  # the sink does not insist on AUTH
    assert snapshot.divergence_of(Step.MAIL) == (4, 0)


def test_a_replay_in_the_engine_process(tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    trio.run(record, recording, varied)

    async def serve_and_replay() -> Snapshot | None:
        async with sink() as server:
            job = ReplayJob((str(recording),), speed=8)
            timeline = job.timeline()
            scenario = replay_scenario(job, timeline, host=LOOPBACK, port=server.address[1], seed=2)
            address = await resolve(LOOPBACK, server.address[1])
            info = job.run_info(run_info(scenario, str(address), 2), timeline)
            engine = EngineProcess(
                EngineJob(scenario_to_toml(scenario), address, 2, info, replay=job)
            )
            engine.start()
            try:
                return await trio.to_thread.run_sync(engine.wait, 60)
            finally:
                engine.close()

    final = trio.run(serve_and_replay)
    assert final is not None and final.info.mode == "replay"
    assert final.counters.started == 20 and final.counters.failed == 0
    assert final.divergence is not None and final.divergence[1].sum() == 0
