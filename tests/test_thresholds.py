"""Thresholds judged on real runs against the embedded sink, and the exit codes of
`smtpbench run` and `smtpbench report` that follow from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.kinds import MESSAGE_LATENCY
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import Verdict, all_passed, evaluate, failing_now
from smtpbench.thresholds import parse_threshold
from tests.runs import run_against, scenario_for
from tests.test_cli import ROOT, only_results_folder, smtpbench


async def _run_with_faults() -> Snapshot:
    # Every 10th RCPT refused with 451, DATA slowed by 20 ms: 2 s at 50 sessions/s.
    plan = parse_fault_table({"reply": {"RCPT": "451:10%"}, "delay": {"DATA": "20ms"}})
    async with embedded_sink(plan.to_argv()) as (_, port):
        with trio.fail_after(60):
            return await run_against(scenario_for(port, rate=50, duration=2))


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return trio.run(_run_with_faults)


def _replies(snapshot: Snapshot) -> tuple[int, int]:
    """(replies in 4xx, all replies), counted from the raw reply table."""
    table = snapshot.replies
    return int(table[:, 400:500].sum()), int(table.sum())


def test_the_run_has_what_the_thresholds_look_at(snapshot: Snapshot) -> None:
    c = snapshot.counters
    assert c.started == 100
    assert 0 < c.failed < c.completed  # refused recipients make failed sessions
    assert _replies(snapshot)[0] > 0


def _pair(snapshot: Snapshot, metric: str, measured: float, unit: str, scale: float) -> None:
    """``metric < above`` passes and ``metric < below`` fails, around the measured value."""
    above = parse_threshold(f"{metric} < {measured * 1.5 * scale:.6g}{unit}")
    below = parse_threshold(f"{metric} < {measured * 0.5 * scale:.6g}{unit}")
    good, bad = evaluate([above, below], snapshot)
    assert good.measured == pytest.approx(measured)
    assert good.verdict is Verdict.PASSED and good.passed, good
    assert bad.verdict is Verdict.FAILED and not bad.passed, bad


def test_latency_percentile_thresholds_pass_and_fail(snapshot: Snapshot) -> None:
    data_p99 = snapshot.histogram(Step.DATA_END).percentile(99)
    _pair(snapshot, "p99(DATA end)", data_p99, "ms", 1e3)
    rcpt_p50 = snapshot.histogram(Step.RCPT).percentile(50)
    _pair(snapshot, "p50(RCPT, service)", rcpt_p50, "us", 1e6)
    # The 20 ms DATA delay shows in the service time of DATA.
    [delayed] = evaluate([parse_threshold("p50(DATA) > 15ms")], snapshot)
    assert delayed.passed
    message = snapshot.histogram(MESSAGE_LATENCY).percentile(99)
    _pair(snapshot, "p99(message)", message, "ms", 1e3)


def test_mean_and_max_thresholds(snapshot: Snapshot) -> None:
    histogram = snapshot.histogram(Step.MAIL)
    _pair(snapshot, "mean(MAIL)", histogram.total / histogram.count, "ms", 1e3)
    _pair(snapshot, "max(MAIL)", histogram.maximum, "ms", 1e3)


def test_reply_class_rate_thresholds(snapshot: Snapshot) -> None:
    fours, total = _replies(snapshot)
    share = fours / total
    _pair(snapshot, "rate(4xx)", share, "%", 100)
    rcpt = snapshot.replies[Step.RCPT]
    _pair(snapshot, "rate(451, RCPT)", int(rcpt[451]) / int(rcpt.sum()), "%", 100)
    [none] = evaluate([parse_threshold("rate(5xx) == 0")], snapshot)
    assert none.passed and none.measured == 0


def test_error_rate_and_counts(snapshot: Snapshot) -> None:
    c = snapshot.counters
    _pair(snapshot, "rate(errors)", c.failed / c.completed, "%", 100)
    results = evaluate(
        [
            parse_threshold("dropped == 0"),
            parse_threshold(f"failed == {c.failed}"),
            parse_threshold(f"failed < {c.failed}"),
            parse_threshold("started >= 100"),
        ],
        snapshot,
    )
    assert [r.passed for r in results] == [True, True, False, True]
    assert results[0].measured == 0


def test_throughput_thresholds(snapshot: Snapshot) -> None:
    c = snapshot.counters
    messages = c.messages_accepted / snapshot.elapsed
    _pair(snapshot, "throughput", messages, "/s", 1)
    [sessions] = evaluate([parse_threshold("throughput(sessions) > 1/s")], snapshot)
    assert sessions.measured == pytest.approx(c.started / snapshot.elapsed)
    [per_minute] = evaluate([parse_threshold(f"throughput > {messages * 30:.3f}/m")], snapshot)
    assert per_minute.passed  # half the rate, written per minute


def test_a_metric_with_no_data_fails_unless_optional(snapshot: Snapshot) -> None:
    required, optional, mark = evaluate(
        [
            parse_threshold("p99(AUTH) < 1s"),
            parse_threshold("p99(AUTH) < 1s optional"),
            parse_threshold("rate(4xx, BDAT)? < 1%"),
        ],
        snapshot,
    )
    assert required.verdict is Verdict.NO_DATA and required.measured is None
    assert not required.passed and required.outcome_text == "FAIL (no data)"
    assert optional.verdict is Verdict.NO_DATA and optional.passed
    assert mark.passed
    assert not all_passed([required, optional])
    # Missing data never stops a run part-way: it may still come.
    assert failing_now([required]) == []


# -- exit codes ---------------------------------------------------------------


def _run(tmp_path: Path, *args: str) -> tuple[int, Path | None, str, str]:
    out = tmp_path / "results"
    result = smtpbench("run", "--out", str(out), "--progress-interval", "1s", *args, cwd=ROOT)
    folder = only_results_folder(out) if out.exists() else None
    # Rich wraps long lines: compare messages with their spaces and line ends folded.
    return result.returncode, folder, result.stdout, " ".join(result.stderr.split())


def test_exit_code_0_when_every_threshold_passes(tmp_path: Path) -> None:
    code, folder, stdout, stderr = _run(
        tmp_path,
        *("--duration", "1s", "--rate", "20"),
        *("--threshold", "p99(DATA end) < 5s", "--threshold", "dropped == 0"),
        *("--threshold", "p99(AUTH) < 1s optional"),
    )
    assert code == exitcodes.OK, stderr
    assert "Thresholds: all 3 passed" in stdout
    assert folder is not None
    saved = json.loads((folder / "thresholds.json").read_text())
    assert saved["passed"] is True and saved["aborted_by"] is None
    assert [t["verdict"] for t in saved["thresholds"]] == ["passed", "passed", "no data"]
    # The thresholds are part of the resolved scenario, so a re-run checks them too.
    assert '"dropped == 0",' in (folder / "scenario.toml").read_text()


def test_exit_code_1_names_the_failed_threshold(tmp_path: Path) -> None:
    code, folder, stdout, _ = _run(
        tmp_path,
        *("--duration", "1s", "--rate", "20"),
        *("--threshold", "throughput > 1000/s", "--threshold", "p99(BDAT) < 1s"),
        *("--threshold", "p99(DATA end) < 5s"),
    )
    assert code == exitcodes.THRESHOLDS_FAILED
    assert "Thresholds: 2 of 3 failed" in stdout
    line = next(line for line in stdout.splitlines() if "throughput > 1000/s" in line)
    assert "FAIL" in line and "/s" in line  # the measured value beside it
    assert "FAIL (no data)" in next(line for line in stdout.splitlines() if "p99(BDAT)" in line)
    assert folder is not None
    saved = json.loads((folder / "thresholds.json").read_text())
    assert saved["passed"] is False
    assert [t["passed"] for t in saved["thresholds"]] == [False, False, True]

    # report checks the same thresholds again, offline, with the same exit code.
    again = smtpbench("report", str(folder), cwd=tmp_path)
    assert again.returncode == exitcodes.THRESHOLDS_FAILED
    assert "Thresholds: 2 of 3 failed" in again.stdout
    other = smtpbench("report", str(folder), "--threshold", "dropped == 0", cwd=tmp_path)
    assert other.returncode == exitcodes.OK, other.stderr
    assert "Thresholds: all 1 passed" in other.stdout


def test_exit_code_2_for_a_bad_expression_before_anything_runs(tmp_path: Path) -> None:
    code, folder, _, stderr = _run(tmp_path, "--threshold", "p99(DATA) < 250")
    assert code == exitcodes.BAD_CONFIGURATION
    assert "--threshold 'p99(DATA) < 250': 250 has no unit" in stderr
    assert folder is None
    broken = tmp_path / "ci.toml"
    broken.write_text('[thresholds]\nchecks = ["rate(4xx) < 1%", "p99(RCTP) < 5ms"]\n')
    code, folder, _, stderr = _run(tmp_path, str(broken))
    assert code == exitcodes.BAD_CONFIGURATION
    assert "ci.toml: thresholds.checks[1]: 'p99(RCTP) < 5ms': unknown command" in stderr
    assert folder is None


def test_exit_code_5_when_a_failing_threshold_stops_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        'name = "slow"\n[load]\nrate = "20/s"\nduration = "60s"\n'
        '[sink]\ndelay = { DATA = "20ms" }\n'
        '[thresholds]\nchecks = ["p50(DATA) < 5ms"]\nabort_on_fail = true\nabort_grace = "1s"\n'
    )
    code, folder, stdout, stderr = _run(tmp_path, str(scenario))
    assert code == exitcodes.ABORTED_BY_THRESHOLD, stderr
    assert "threshold failed: p50(DATA) < 5ms" in stdout
    assert folder is not None
    snapshot = read_results(folder)
    assert snapshot.state.value == "interrupted"
    assert 0 < snapshot.counters.started < 1200  # stopped long before the planned end
    saved = json.loads((folder / "thresholds.json").read_text())
    assert saved["aborted_by"] == "p50(DATA) < 5ms"


def test_abort_on_fail_waits_for_a_count_that_can_still_be_reached(tmp_path: Path) -> None:
    code, folder, _, stderr = _run(
        tmp_path,
        *("--duration", "2s", "--rate", "20", "--abort-on-fail", "--abort-grace", "0s"),
        *("--threshold", "started >= 40"),
    )
    assert code == exitcodes.OK, stderr
    assert folder is not None and read_results(folder).counters.started == 40
