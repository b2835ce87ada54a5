"""Thresholds on enhanced status codes: ``rate(4.7.1) < 1%`` and ``rate(5.1.1, RCPT)``
parsed, measured on a snapshot made by hand (expected shares by arithmetic), checked
live on a real run that a failing one stops (exit code 5), and again by ``report``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import Snapshot, enhanced_counts
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import Verdict, evaluate
from smtpbench.thresholds import Kind, ThresholdError, parse_threshold
from tests.known_snapshot import snapshot_of
from tests.test_cli import ROOT, only_results_folder, smtpbench

# 400 replies: MAIL 200 x 250, all "2.1.0"; RCPT 180 x 250 and 20 x 451. Of the RCPT
# replies, 170 carried 2.1.5 (10 carried none), 15 carried 4.7.1 and 5 carried 4.2.1.
REPLIES = {(Step.MAIL, 250): 200, (Step.RCPT, 250): 180, (Step.RCPT, 451): 20}
ENHANCED = {
    (int(Step.MAIL), "2.1.0"): 200,
    (int(Step.RCPT), "2.1.5"): 170,
    (int(Step.RCPT), "4.7.1"): 15,
    (int(Step.RCPT), "4.2.1"): 5,
}


@pytest.fixture(scope="module")
def known() -> Snapshot:
    return dataclasses.replace(snapshot_of({}, replies=REPLIES), enhanced=enhanced_counts(ENHANCED))


@pytest.mark.parametrize(
    ("text", "shown", "step", "meaning"),
    [
        ("rate(4.7.1) < 1%", "rate(4.7.1)", None, "share of all replies with enhanced code 4.7.1"),
        (
            "rate(5.1.1, RCPT) < 0.5%",
            "rate(5.1.1, RCPT)",
            Step.RCPT,
            "share of RCPT replies with enhanced code 5.1.1",
        ),
        ("rate(2.0.0,data end)? > 99%", "rate(2.0.0, DATA end)", Step.DATA_END, None),
        ("rate(4.4.120) == 0", "rate(4.4.120)", None, None),
    ],
)
def test_enhanced_code_rates_parse_like_basic_code_rates(
    text: str, shown: str, step: Step | None, meaning: str | None
) -> None:
    threshold = parse_threshold(text)
    metric = threshold.metric
    assert metric.name == "rate" and metric.kind is Kind.SHARE and metric.is_enhanced
    assert str(metric) == shown and metric.step is step
    assert str(parse_threshold(f"{shown} < 1%").metric) == shown  # written back, read again
    if meaning is not None:
        assert metric.meaning == meaning
    assert not parse_threshold("rate(451) < 1%").metric.is_enhanced


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rate(3.0.0) < 1%", "'rate(3.0.0) < 1%': rate of '3.0.0': an enhanced status code"),
        ("rate(4.7) < 1%", "'rate(4.7) < 1%': rate of '4.7': an enhanced status code"),
        ("rate(4.07.1) < 1%", "is CLASS.SUBJECT.DETAIL (RFC 3463), its class 2, 4 or 5"),
        ("rate(4.7.1000) < 1%", "rate of '4.7.1000': an enhanced status code"),
        ("rate(4.7.x) < 1%", "an enhanced status code such as 4.7.1"),
        ("rate(4.7.1, RCTP) < 1%", "'rate(4.7.1, RCTP) < 1%': unknown SMTP step 'RCTP'"),
        ("rate(4.7.1) < 1ms", "'rate(4.7.1) < 1ms': expected a share"),
    ],
)
def test_a_malformed_enhanced_rate_says_which_threshold_and_why(text: str, says: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    assert says in str(caught.value)


def test_an_enhanced_rate_is_the_share_of_replies_that_carried_it(known: Snapshot) -> None:
    results = evaluate(
        [
            parse_threshold(text)
            for text in (
                "rate(4.7.1) < 1%",  # 15 of 400 replies: 3.75%
                "rate(4.7.1, RCPT) < 10%",  # 15 of 200 RCPT replies: 7.5%
                "rate(4.7.1, MAIL) == 0",  # none of 200
                "rate(2.1.5, RCPT) > 85%",  # 170 of 200: 85%, not more
                "rate(5.1.1) == 0",  # none at all, yet there were replies: measured 0
                "rate(4.7.1, DATA end) < 1%",  # no DATA end reply at all: no data
            )
        ],
        known,
    )
    assert [r.measured for r in results] == [15 / 400, 15 / 200, 0.0, 170 / 200, 0.0, None]
    assert [r.verdict for r in results] == [
        Verdict.FAILED,
        Verdict.PASSED,
        Verdict.PASSED,
        Verdict.FAILED,
        Verdict.PASSED,
        Verdict.NO_DATA,
    ]
    assert results[0].measured_text == "3.75%"


# -- real runs: checked live, stopped early, and checked again offline ------------------


@pytest.mark.end_to_end
def test_a_failing_enhanced_rate_stops_the_run_and_report_checks_it_again(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "greylist.toml"
    scenario.write_text(
        'name = "greylist"\n[load]\nrate = "20/s"\nduration = "60s"\n'
        '[sink]\nreply = { RCPT = "450:40%" }\n'
        '[thresholds]\nchecks = ["rate(4.2.1, RCPT) < 1%", "rate(4.7.1) == 0"]\n'
        'abort_on_fail = true\nabort_grace = "1s"\n'
    )
    out = tmp_path / "results"
    run = smtpbench("run", str(scenario), "--out", str(out), "--progress-interval", "1s", cwd=ROOT)
    assert run.returncode == exitcodes.ABORTED_BY_THRESHOLD, run.stderr
    assert "threshold failed: rate(4.2.1, RCPT) < 1%" in run.stdout
    folder = only_results_folder(out)
    snapshot = read_results(folder)
    assert 0 < snapshot.counters.started < 1200  # stopped long before the planned end
    rcpt = snapshot.reply_codes(Step.RCPT)
    # The sink sends 450 as "450 4.2.1" (docs/sink.md): the share is 450s over RCPT replies.
    share = rcpt[450] / sum(rcpt.values())
    saved = json.loads((folder / "thresholds.json").read_text())
    assert saved["aborted_by"] == "rate(4.2.1, RCPT) < 1%"
    greylisted, other = saved["thresholds"]
    assert greylisted["measured"] == pytest.approx(share, abs=1e-12)
    assert greylisted["verdict"] == "failed"
    assert other["measured"] == 0 and other["verdict"] == "passed"

    again = smtpbench("report", str(folder), cwd=tmp_path)
    assert again.returncode == exitcodes.THRESHOLDS_FAILED, again.stderr
    assert "Thresholds: 1 of 2 failed" in again.stdout
    loose = smtpbench(
        "report", str(folder), "--threshold", f"rate(4.2.1) < {share * 100 + 1:.3f}%", cwd=tmp_path
    )
    assert loose.returncode == exitcodes.OK, loose.stdout
