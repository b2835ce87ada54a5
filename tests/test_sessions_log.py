"""`smtpbench run --record-sessions`: one NDJSON record per session, agreeing with the
results folder's counts."""

from __future__ import annotations

from pathlib import Path

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from smtpbench.metrics.sessions import SESSIONS_FILE, read_sessions
from smtpbench.protocol.steps import Step
from tests.test_cli import ROOT, only_results_folder, smtpbench


def test_every_session_is_recorded_with_its_steps(tmp_path: Path) -> None:
    scenario = tmp_path / "picky.toml"
    scenario.write_text(
        'name = "picky"\n[load]\nrate = "30/s"\nduration = "2s"\n'
        '[sink]\nreply = { RCPT = "451:30%" }\n'
    )
    out = tmp_path / "results"
    result = smtpbench("run", str(scenario), "--record-sessions", "--out", str(out), cwd=ROOT)
    assert result.returncode == exitcodes.OK, result.stderr
    folder = only_results_folder(out)
    assert list(out.iterdir()) == [folder]  # nothing left beside it
    snapshot = read_results(folder)
    records = read_sessions(folder / SESSIONS_FILE)
    c = snapshot.counters
    assert len(records) == c.started == 60
    assert sorted(r["session"] for r in records) == list(range(60))
    assert sum(r["messages_accepted"] for r in records) == c.messages_accepted
    assert sum(r["messages_rejected"] for r in records) == c.messages_rejected
    failed = [r for r in records if r["outcome"] == "failed"]
    assert len(failed) == c.failed > 0
    assert {(r["error"], r["error_step"]) for r in failed} == {("unexpected reply", "RCPT")}
    assert all(r["detail"].startswith("451") for r in failed)
    steps = [step for r in records for step in r["steps"]]
    for step in (Step.CONNECT, Step.RCPT, Step.DATA_END):
        timed = [s for s in steps if s[0] == step.label and s[1] is not None]
        assert len(timed) == snapshot.latency_count(step)
    rcpt_codes = [s[2] for s in steps if s[0] == "RCPT"]
    assert rcpt_codes.count(451) == int(snapshot.replies[Step.RCPT, 451])
    first = min(records, key=lambda r: r["session"])
    assert first["intended"] == 0.0
    assert [s[0] for s in first["steps"]][:3] == ["connect", "banner", "EHLO"]
    assert first["steps"][0][2] is None and first["steps"][1][2] == 220
    for record in records:
        assert record["start_lag"] >= 0 and record["duration"] > 0
