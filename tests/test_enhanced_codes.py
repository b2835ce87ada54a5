"""Enhanced status codes (RFC 3463) counted per command beside the basic code, on real
runs against the embedded sink: in the snapshot, across the engine pipe, through the
results folder, and added up across workers and runs.

The expected counts come from the sink's documented replies (docs/sink.md): every
RCPT it takes is ``250 2.1.5``, an injected 450 is ``450 4.2.1``, MAIL is ``250 2.1.0``,
the final dot and QUIT ``2.0.0``; the banner, EHLO and DATA's 354 carry none. So each
enhanced count must equal the count of its basic code, read from the reply table."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.engine.snapshot_wire import Packer, Unpacker
from smtpbench.metrics.live_merge import WorkerMerge
from smtpbench.metrics.merge import merge_snapshots
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.results import ResultsError, read_results, write_results
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.protocol.steps import Step
from tests.fake_engine import INFO
from tests.runs import run_against, scenario_for
from tests.test_cli import smtpbench

FAULTS = ("--reply", "RCPT=450:30%", "--seed", "7")


def expected_enhanced(snapshot: Snapshot) -> dict[Step, dict[str, int]]:
    """What the sink's documented replies make of the basic reply counts."""
    codes = {step: snapshot.reply_codes(step) for step in Step}
    expected = {
        Step.MAIL: {"2.1.0": codes[Step.MAIL].get(250, 0)},
        Step.RCPT: {"2.1.5": codes[Step.RCPT].get(250, 0), "4.2.1": codes[Step.RCPT].get(450, 0)},
        Step.DATA_END: {"2.0.0": codes[Step.DATA_END].get(250, 0)},
        Step.RSET: {"2.0.0": codes[Step.RSET].get(250, 0)},
        Step.QUIT: {"2.0.0": codes[Step.QUIT].get(221, 0)},
    }
    return {step: {c: n for c, n in want.items() if n} for step, want in expected.items()}


def enhanced_by_step(snapshot: Snapshot) -> dict[Step, dict[str, int]]:
    return {step: codes for step in Step if (codes := snapshot.enhanced_codes(step))}


@pytest.fixture(scope="module")
def two_runs() -> tuple[Snapshot, Snapshot]:
    """Two runs against one sink that refuses 30% of RCPTs with 450."""

    async def main() -> tuple[Snapshot, Snapshot]:
        async with embedded_sink(FAULTS) as (_, port):
            first = await run_against(scenario_for(port, rate=40, duration=1), seed=1)
            second = await run_against(scenario_for(port, rate=30, duration=1), seed=2)
        return first, second

    return trio.run(main)


def test_a_real_run_counts_each_commands_enhanced_codes_beside_the_basic_ones(
    two_runs: tuple[Snapshot, Snapshot],
) -> None:
    run = two_runs[0]
    rcpt = run.reply_codes(Step.RCPT)
    assert rcpt.get(450, 0) > 0 and rcpt.get(250, 0) > 0  # the fault was drawn, and not always
    assert enhanced_by_step(run) == expected_enhanced(run)
    for step in (Step.BANNER, Step.EHLO, Step.DATA):
        assert run.enhanced_codes(step) == {}
    assert run.enhanced_count("4.2.1") == run.enhanced_count("4.2.1", Step.RCPT) == rcpt[450]
    assert run.enhanced_count("4.2.1", Step.MAIL) == 0
    assert run.enhanced_count("2.0.0") == (
        run.reply_codes(Step.DATA_END).get(250, 0)
        + run.reply_codes(Step.RSET).get(250, 0)
        + run.reply_codes(Step.QUIT).get(221, 0)
    )


def test_enhanced_codes_cross_the_engine_pipe_unchanged(
    two_runs: tuple[Snapshot, Snapshot],
) -> None:
    run = two_runs[0]
    back = Unpacker().unpack(pickle.loads(pickle.dumps(Packer().pack(run))))
    assert back.enhanced == run.enhanced
    assert enhanced_by_step(back) == expected_enhanced(run)


def test_a_live_snapshot_keeps_its_enhanced_counts_when_recording_goes_on() -> None:
    recorder = Recorder(INFO)
    recorder.reply(Step.RCPT, 450, 0.001, "4.7.1")
    recorder.flush(1.0)
    packed = Packer().pack(recorder.snapshot(1.0, live=True))
    recorder.reply(Step.RCPT, 450, 0.001, "4.7.1")
    recorder.reply(Step.MAIL, 250, 0.001, "2.1.0")
    assert Unpacker().unpack(packed).enhanced_codes(Step.RCPT) == {"4.7.1": 1}
    later = recorder.snapshot(2.0)
    assert later.enhanced_codes(Step.RCPT) == {"4.7.1": 2}
    assert later.enhanced_codes(Step.MAIL) == {"2.1.0": 1}


def test_enhanced_codes_survive_the_results_folder(
    two_runs: tuple[Snapshot, Snapshot], tmp_path: Path
) -> None:
    run = two_runs[0]
    write_results(tmp_path, run, 'name = "default"\n')
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["version"] == 1
    want = expected_enhanced(run)
    assert summary["enhanced"] == {step.label: codes for step, codes in want.items() if codes}
    back = read_results(tmp_path)
    assert back.enhanced == run.enhanced
    assert enhanced_by_step(back) == want


def test_a_folder_written_before_enhanced_codes_reads_as_having_none(
    two_runs: tuple[Snapshot, Snapshot], tmp_path: Path
) -> None:
    write_results(tmp_path, two_runs[0], 'name = "default"\n')
    path = tmp_path / "summary.json"
    summary = json.loads(path.read_text())
    del summary["enhanced"]
    path.write_text(json.dumps(summary))
    back = read_results(tmp_path)
    assert back.enhanced == ()
    assert back.enhanced_codes(Step.RCPT) == {}
    assert np.array_equal(back.replies, two_runs[0].replies)


@pytest.mark.parametrize(
    "bad",
    [{"RCPT": {"4.7": 3}}, {"RCPT": {"4.7.1": -1}}, {"RCPT": {"4.7.1": "3"}}, {"RCTP": {}}],
)
def test_a_malformed_enhanced_field_is_refused_by_name(
    two_runs: tuple[Snapshot, Snapshot], tmp_path: Path, bad: dict[str, dict[str, object]]
) -> None:
    write_results(tmp_path, two_runs[0], 'name = "default"\n')
    path = tmp_path / "summary.json"
    summary = json.loads(path.read_text())
    summary["enhanced"] = bad
    path.write_text(json.dumps(summary))
    with pytest.raises(ResultsError, match="malformed field"):
        read_results(tmp_path)


def _added(runs: tuple[Snapshot, ...]) -> dict[Step, dict[str, int]]:
    total: dict[Step, dict[str, int]] = {}
    for run in runs:
        for step, codes in enhanced_by_step(run).items():
            for code, n in codes.items():
                total.setdefault(step, {})[code] = total.get(step, {}).get(code, 0) + n
    return total


def test_two_runs_merge_their_enhanced_codes_exactly(
    two_runs: tuple[Snapshot, Snapshot], tmp_path: Path
) -> None:
    merged = merge_snapshots(two_runs)
    assert enhanced_by_step(merged) == _added(two_runs) == expected_enhanced(merged)
    folders = []
    for k, run in enumerate(two_runs):
        folders.append(tmp_path / f"run{k}")
        write_results(folders[-1], run, 'name = "default"\n')
    out = tmp_path / "merged"
    done = smtpbench("merge", *map(str, folders), "--out", str(out), cwd=tmp_path)
    assert done.returncode == exitcodes.OK, done.stderr
    assert enhanced_by_step(read_results(out)) == _added(two_runs)


def test_workers_merge_their_enhanced_codes_as_they_report() -> None:
    """Three workers, each with its own codes; the live merge adds their latest counts,
    and a worker's later snapshot replaces its earlier one (never added twice)."""
    workers = [Recorder(INFO, live_intervals=True) for _ in range(3)]
    merge = WorkerMerge(INFO, 3)
    plan = [("4.7.1", 2), ("4.7.1", 3), ("5.1.1", 4)]  # worker k: its code, RCPTs a second
    for second in (1.0, 2.0):
        for k, (recorder, (code, n)) in enumerate(zip(workers, plan, strict=True)):
            recorder.state = RunState.RUNNING
            for _ in range(n):
                recorder.reply(Step.RCPT, int(code[0]) * 100 + 50, 0.001, code)
            recorder.reply(Step.MAIL, 250, 0.001, "2.1.0")
            recorder.flush(second)
            merge.add(k, recorder.snapshot(second), recorder.take_intervals(), final=False)
        live = merge.snapshot()
        assert live is not None
        # After second s, each worker has sent s seconds of its n codes a second.
        s = int(second)
        assert live.enhanced_codes(Step.RCPT) == {"4.7.1": 5 * s, "5.1.1": 4 * s}
        assert live.enhanced_codes(Step.MAIL) == {"2.1.0": 3 * s}
    for k, recorder in enumerate(workers):
        recorder.state = RunState.DONE
        merge.add(k, recorder.snapshot(2.0), recorder.take_intervals(), final=True)
    final = merge.final()
    assert final is not None
    assert final.enhanced_count("4.7.1", Step.RCPT) == 10
    assert final.enhanced_count("5.1.1") == 8
