"""Thresholds judged on snapshots made by hand from raw samples (what each should
measure worked out from the samples), on a real run against the embedded sink, and the
exit codes of `smtpbench run` and `smtpbench report` that follow from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.kinds import MESSAGE_LATENCY
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import Counters, Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import (
    ThresholdResult,
    Verdict,
    all_passed,
    evaluate,
    failing_now,
)
from smtpbench.thresholds import parse_threshold
from tests.known_snapshot import snapshot_of
from tests.runs import run_against, scenario_for
from tests.test_cli import ROOT, only_results_folder, smtpbench

# -- on a snapshot made by hand: every expected value from the samples or by arithmetic --

# MAIL: four samples, mean 4 ms, min 1 ms, max 10 ms (by hand).
MAIL_SAMPLES = (0.001, 0.002, 0.003, 0.010)
DATA_END_SAMPLES = np.random.default_rng(18).lognormal(np.log(0.040), 0.6, 2_000)
MESSAGE_SAMPLES = np.random.default_rng(19).lognormal(np.log(0.120), 0.3, 500)
# Replies: RCPT 180 x 250 and 20 x 451, MAIL 200 x 250: 20 of 400 in 4xx (5%), 20 of 200
# RCPT replies are 451 (10%), none in 5xx.
REPLIES = {(Step.RCPT, 250): 180, (Step.RCPT, 451): 20, (Step.MAIL, 250): 200}
# 3 of 60 completed sessions failed (5%), 2 of 100 scheduled dropped (2%); 150 messages
# and 60 sessions in 10 s: 15 messages/s (900 a minute), 6 sessions/s.
COUNTERS = Counters(
    scheduled=100, started=60, completed=60, failed=3, dropped=2, messages_accepted=150
)
PROMISE = 0.01  # a percentile is within 1% of the true sample


@pytest.fixture(scope="module")
def known() -> Snapshot:
    return snapshot_of(
        {
            Step.MAIL: MAIL_SAMPLES,
            Step.DATA_END: DATA_END_SAMPLES,
            MESSAGE_LATENCY: MESSAGE_SAMPLES,
        },
        replies=REPLIES,
        counters=COUNTERS,
        elapsed=10.0,
    )


def _judge(snapshot: Snapshot, *texts: str) -> list[ThresholdResult]:
    return evaluate([parse_threshold(text) for text in texts], snapshot)


def _verdicts(results: list[ThresholdResult]) -> list[bool]:
    return [result.passed for result in results]


@pytest.mark.parametrize(
    ("metric", "samples", "q"),
    [
        ("p99(DATA end)", DATA_END_SAMPLES, 99),
        ("p50(DATA end, service)", DATA_END_SAMPLES, 50),
        ("p99.9(DATA end)", DATA_END_SAMPLES, 99.9),
        ("p90(message)", MESSAGE_SAMPLES, 90),
        ("p50(message, intended)", MESSAGE_SAMPLES, 50),
    ],
)
def test_a_percentile_is_measured_within_one_percent_of_the_samples(
    known: Snapshot, metric: str, samples: np.ndarray, q: float
) -> None:
    exact = float(np.percentile(samples, q, method="inverted_cdf"))
    [result] = _judge(known, f"{metric} < 1s")
    assert result.measured == pytest.approx(exact, rel=PROMISE)
    ms = exact * 1e3
    above, below = _judge(known, f"{metric} < {ms * 1.02:.6g}ms", f"{metric} < {ms * 0.98:.6g}ms")
    assert above.passed and above.verdict is Verdict.PASSED
    assert not below.passed and below.verdict is Verdict.FAILED


def test_mean_min_and_max_are_those_of_the_samples(known: Snapshot) -> None:
    mean, low, high = _judge(known, "mean(MAIL) < 1s", "min(MAIL) < 1s", "max(MAIL) < 1s")
    assert mean.measured == pytest.approx(0.004, rel=1e-12)
    assert low.measured == 0.001 and high.measured == 0.010
    assert _verdicts(
        _judge(
            known,
            *("mean(MAIL) < 4.1ms", "mean(MAIL) < 3.9ms", "mean(MAIL) > 3.9ms"),
            *("max(MAIL) <= 10ms", "max(MAIL) < 10ms", "min(MAIL) >= 1ms", "min(MAIL) > 1ms"),
        )
    ) == [True, False, True, True, False, True, False]
    [data_mean] = _judge(known, "mean(DATA end) < 1s")
    assert data_mean.measured == pytest.approx(float(np.mean(DATA_END_SAMPLES)), rel=1e-12)
    assert mean.measured_text == "4.00ms"


def test_reply_shares_are_counted_by_class_and_by_code(known: Snapshot) -> None:
    fours, code, fives, twos = _judge(
        known, "rate(4xx) < 1%", "rate(451, RCPT) < 1%", "rate(5xx) == 0", "rate(2xx) > 1%"
    )
    assert fours.measured == pytest.approx(0.05)
    assert code.measured == pytest.approx(0.10)
    assert fives.measured == 0 and fives.passed
    assert twos.measured == pytest.approx(0.95) and twos.passed
    assert fours.measured_text == "5%" and code.measured_text == "10%"
    assert _verdicts(
        _judge(
            known,
            *("rate(4xx) < 5.1%", "rate(4xx) < 4.9%", "rate(4xx, MAIL) == 0"),
            *("rate(451, RCPT) <= 10%", "rate(451, RCPT) < 0.099"),
        )
    ) == [True, False, True, True, False]


def test_session_shares_throughput_and_counts(known: Snapshot) -> None:
    errors, dropped, messages, sessions = _judge(
        known, "rate(errors) < 1%", "rate(dropped) < 1%", "throughput > 1/s",
        "throughput(sessions) > 1/s",
    )  # fmt: skip
    assert errors.measured == pytest.approx(0.05) and not errors.passed
    assert dropped.measured == pytest.approx(0.02) and not dropped.passed
    assert messages.measured == pytest.approx(15.0) and messages.measured_text == "15.0/s"
    assert sessions.measured == pytest.approx(6.0)
    assert _verdicts(
        _judge(
            known,
            *("throughput > 899/m", "throughput > 901/m", "rate(errors) < 5.1%"),
            *("dropped == 2", "dropped < 2", "failed <= 3", "started >= 61"),
        )
    ) == [True, False, True, True, False, True, False]


def test_a_metric_with_no_data_fails_unless_optional(known: Snapshot) -> None:
    required, optional, mark = _judge(
        known, "p99(AUTH) < 1s", "p99(AUTH) < 1s optional", "rate(4xx, BDAT)? < 1%"
    )
    assert required.verdict is Verdict.NO_DATA and required.measured is None
    assert not required.passed and required.outcome_text == "FAIL (no data)"
    assert optional.verdict is Verdict.NO_DATA and optional.passed
    assert mark.passed
    assert not all_passed([required, optional])
    # Missing data never stops a run part-way: it may still come.
    assert failing_now([required]) == []


# -- a real run against the embedded sink with faults ---------------------------------


async def _run_with_faults() -> Snapshot:
    # RCPT refused with 451 one time in ten (at random), DATA slowed by 20 ms: 2 s at 50/s.
    plan = parse_fault_table({"reply": {"RCPT": "451:10%"}, "delay": {"DATA": "20ms"}})
    async with embedded_sink(plan.to_argv()) as (_, port):
        with trio.fail_after(60):
            return await run_against(scenario_for(port, rate=50, duration=2))


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return trio.run(_run_with_faults)


@pytest.mark.end_to_end
def test_thresholds_on_a_real_run_see_what_the_sink_did(snapshot: Snapshot) -> None:
    c = snapshot.counters
    assert c.started == 100  # 50/s for 2 s
    assert 0 < c.failed < c.completed  # refused recipients make failed sessions
    assert _verdicts(
        _judge(
            snapshot,
            # The sink's 20 ms delay shows in the service time of DATA, not of MAIL.
            *("p50(DATA) > 15ms", "p50(DATA) < 15ms", "p99(MAIL) < 15ms"),
            *("rate(451, RCPT) > 0", "rate(5xx) == 0", "rate(4xx, MAIL) == 0"),
            *("started == 100", "dropped == 0", "p99(AUTH) < 1s optional"),
        )
    ) == [True, False, True, True, True, True, True, True, True]
    [share] = _judge(snapshot, "rate(451, RCPT) < 1%")
    rcpt = snapshot.replies[Step.RCPT]
    assert share.measured == int(rcpt[451]) / int(rcpt.sum())  # counted, not estimated


# -- exit codes ---------------------------------------------------------------


def _run(tmp_path: Path, *args: str) -> tuple[int, Path | None, str, str]:
    out = tmp_path / "results"
    result = smtpbench("run", "--out", str(out), "--progress-interval", "1s", *args, cwd=ROOT)
    folder = only_results_folder(out) if out.exists() else None
    # Rich wraps long lines: compare messages with their spaces and line ends folded.
    return result.returncode, folder, result.stdout, " ".join(result.stderr.split())


@pytest.mark.end_to_end
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


@pytest.mark.end_to_end
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


@pytest.mark.end_to_end
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


@pytest.mark.end_to_end
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


@pytest.mark.end_to_end
def test_abort_on_fail_waits_for_a_count_that_can_still_be_reached(tmp_path: Path) -> None:
    code, folder, _, stderr = _run(
        tmp_path,
        *("--duration", "2s", "--rate", "20", "--abort-on-fail", "--abort-grace", "0s"),
        *("--threshold", "started >= 40"),
    )
    assert code == exitcodes.OK, stderr
    assert folder is not None and read_results(folder).counters.started == 40
