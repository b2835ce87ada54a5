"""Replays of sessions that logged in, whose credentials the recording left out: with
``--user`` (and the password from the environment) each such AUTH is done live with the
recorded mechanism, against a sink that checks the credentials; without, a warning
before the run says how many sessions will fail their AUTH."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import trio

from smtpbench.cli import main
from smtpbench.commands.replay import login
from smtpbench.engine.replay import ReplayJob, left_out_login, logins_left_out, replay_scenario
from smtpbench.engine.transport import resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.recording.reader import read_recording
from smtpbench.run.prepare import run_info
from smtpbench.scenario.model import Auth
from tests.esmtp import esmtp_scenario
from tests.recording_servers import proxy_in_front, run_scenario, settle, sink
from tests.servers import LOOPBACK
from tests.shell_helpers import sink_in_thread

ACCOUNT = (("alice", "s3cret"),)


async def record_logins(out: Path, mechanism: str, sessions: int = 3) -> None:
    """``sessions`` sessions that log in with ``mechanism``, recorded through the proxy
    (which leaves the credentials out, as it does by default)."""
    async with (
        sink(credentials=ACCOUNT) as server,
        proxy_in_front(server.address[1], out) as proxy,
    ):
        scenario = esmtp_scenario(
            proxy.address[1],
            auth=Auth(mechanism=mechanism, username="alice", password="s3cret"),
            load={"sessions": sessions, "rate": 20},
        )
        recorded = await run_scenario(scenario)
        await settle(proxy, recorded.counters.started)
    assert recorded.counters.messages_accepted == sessions


async def replay_to_sink(recording: Path, auth: Auth | None) -> tuple[Snapshot, int]:
    """The replay against a sink that takes alice's password only: the snapshot, and how
    many sessions the sink let log in (its 235 replies)."""
    async with sink(credentials=ACCOUNT) as server:
        job = ReplayJob((str(recording),), speed=8)
        timeline = job.timeline()
        port = server.address[1]
        scenario = replay_scenario(job, timeline, host=LOOPBACK, port=port, seed=1, auth=auth)
        address = await resolve(LOOPBACK, port)
        recorder = Recorder(job.run_info(run_info(scenario, str(address), 1), timeline))
        with trio.fail_after(60):
            snapshot = await job.load_run(scenario, address, 1, recorder, timeline=timeline).run()
        return snapshot, server.stats.replies_by_code[235]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
async def test_a_login_left_out_is_done_live_with_the_given_credentials(
    tmp_path: Path, mechanism: str
) -> None:
    recording = tmp_path / "logins.jsonl"
    await record_logins(recording, mechanism)
    timeline = ReplayJob((str(recording),)).timeline()
    assert logins_left_out(timeline) == {mechanism: 3}
    # Nothing of the credentials is in the file.
    assert b"s3cret" not in recording.read_bytes()

    given = Auth(mechanism="PLAIN", username="alice", password="s3cret")
    snapshot, logged_in = await replay_to_sink(recording, given)
    assert logged_in == 3
    assert snapshot.counters.failed == 0
    assert snapshot.counters.messages_accepted == 3
    # One AUTH step per session, from the AUTH line to the 235, and it matches the recording.
    assert snapshot.histogram(Step.AUTH).count == 3
    assert snapshot.divergence_of(Step.AUTH) == (3, 0)
    assert snapshot.divergence_of(Step.MAIL) == (3, 0)

    wrong = Auth(mechanism="PLAIN", username="alice", password="guess")
    snapshot, logged_in = await replay_to_sink(recording, wrong)
    assert logged_in == 0
    assert snapshot.divergence_of(Step.AUTH) == (3, 3)  # 535 where the recording had 235

    # Without credentials the AUTH goes out as recorded, bare, and fails.
    snapshot, logged_in = await replay_to_sink(recording, None)
    assert logged_in == 0
    compared, differed = snapshot.divergence_of(Step.AUTH)
    assert compared >= 3 and differed >= 3


async def test_what_counts_as_left_out(tmp_path: Path) -> None:
    recording = tmp_path / "logins.jsonl"
    await record_logins(recording, "LOGIN", sessions=1)
    (session,) = read_recording(recording).sessions
    steps = list(session.steps)
    found = [(i, left_out_login(steps, i)) for i in range(len(steps))]
    auth = [i for i, step in enumerate(steps) if step.verb == "AUTH"]
    assert auth and [(i, m) for i, m in found if m is not None] == [(auth[0], "LOGIN")]
    # The SASL responses after it were left out too; a kept AUTH line is not "left out".
    assert [step.kind for step in steps[auth[0] + 1 : auth[0] + 3]] == ["sasl", "sasl"]
    assert all(step.redacted for step in steps[auth[0] + 1 : auth[0] + 3])


def options(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"user": None, "password": None, **given})


def test_login_options(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import Counter

    monkeypatch.delenv("SMTPBENCH_PASSWORD", raising=False)
    left_out = Counter({"PLAIN": 4, "GSSAPI": 1})
    assert login(options(), left_out, ("a.jsonl",)) is None
    err = capsys.readouterr().err
    assert "a.jsonl: 5 sessions log in with credentials the recording left out" in err
    assert "AUTH PLAIN (4), GSSAPI (1)" in err and "--user NAME" in err

    with pytest.raises(ValueError, match="--password-from-flag needs --user"):
        login(options(password="x"), left_out, ("a.jsonl",))
    with pytest.raises(ValueError, match="--user: a user name, one word"):
        login(options(user="al ice"), left_out, ("a.jsonl",))
    with pytest.raises(ValueError, match="an empty password"):
        login(options(user="alice"), left_out, ("a.jsonl",), prompt=lambda _: "")

    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return "pw"

    auth = login(options(user="alice"), left_out, ("a.jsonl",), prompt=prompt)
    assert asked[-1] == "Password for alice: "
    assert auth is not None and (auth.username, auth.password) == ("alice", "pw")
    assert auth.mechanism == "PLAIN"
    assert "GSSAPI cannot be done with --user" in capsys.readouterr().err

    monkeypatch.setenv("SMTPBENCH_PASSWORD", "from-env")
    auth = login(options(user="alice"), Counter({"LOGIN": 2}), ("a.jsonl",))
    assert auth is not None and auth.password == "from-env" and auth.mechanism == "LOGIN"
    auth = login(options(user="alice", password="flag"), Counter({"LOGIN": 2}), ("a.jsonl",))
    assert auth is not None and auth.password == "flag"

    # Nothing left out: no credentials needed, and the user is told so.
    assert login(options(user="alice"), Counter(), ("a.jsonl",)) is None
    assert "no AUTH with its credentials left out" in capsys.readouterr().err


def test_the_replay_command_logs_in_in_engine_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "logins.jsonl"
    trio.run(record_logins, recording, "PLAIN", 4)
    capsys.readouterr()
    assert main(["replay", str(recording), "--dry-run"]) == 0
    assert "credentials left out" in capsys.readouterr().out

    monkeypatch.setenv("SMTPBENCH_PASSWORD", "s3cret")
    with sink_in_thread(credentials=ACCOUNT) as server:
        argv = ["replay", str(recording), "--target", f"{LOOPBACK}:{server.address[1]}"]
        argv += ["--speed", "8", "--headless", "--workers", "2", "--user", "alice"]
        assert main([*argv, "--out", str(tmp_path / "results")]) == 0
        assert server.stats.replies_by_code[235] == 4
    (folder,) = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counters"]["failed"] == 0
    assert summary["divergence"]["AUTH"] == {"compared": 4, "differed": 0, "share": 0.0}
    # The password went to the engine processes, never into the results.
    written = [path for path in folder.rglob("*") if path.is_file()]
    assert written and not any(b"s3cret" in path.read_bytes() for path in written)


def test_a_user_with_no_password_and_no_terminal_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "logins.jsonl"
    trio.run(record_logins, recording, "PLAIN", 1)
    monkeypatch.delenv("SMTPBENCH_PASSWORD", raising=False)
    capsys.readouterr()
    argv = ["replay", str(recording), "--user", "alice", "--headless"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2  # nothing ran
    err = " ".join(capsys.readouterr().err.split())
    assert "--user: no password: set $SMTPBENCH_PASSWORD (no terminal to prompt on)" in err
    assert not (tmp_path / "out").exists()
