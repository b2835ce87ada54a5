"""Threshold expressions: every form parses to what it says, every mistake is named, and a
scenario's [thresholds] table reads and writes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench.protocol.steps import Step
from smtpbench.scenario import ScenarioError, default_scenario, parse_scenario, scenario_to_toml
from smtpbench.thresholds import (
    MESSAGE_ROW,
    START_LAG_ROW,
    Kind,
    ThresholdError,
    parse_threshold,
)


@pytest.mark.parametrize(
    ("text", "name", "row", "q", "op", "value"),
    [
        ("p99(DATA) < 250ms", "percentile", Step.DATA, 99.0, "<", 0.25),
        ("p50(RCPT, service) < 5ms", "percentile", Step.RCPT, 50.0, "<", 0.005),
        ("p99.9(DATA end) <= 1s", "percentile", Step.DATA_END, 99.9, "<=", 1.0),
        ("p(99.9)(data_end) <= 1s", "percentile", Step.DATA_END, 99.9, "<=", 1.0),
        ("p99(message) < 2s", "percentile", MESSAGE_ROW, 99.0, "<", 2.0),
        ("p90(start lag, intended) < 100ms", "percentile", START_LAG_ROW, 90.0, "<", 0.1),
        ("mean(connect) < 1ms", "mean", Step.CONNECT, None, "<", 0.001),
        ("max(QUIT) < 500us", "max", Step.QUIT, None, "<", 0.0005),
    ],
)
def test_latency_forms(
    text: str, name: str, row: int, q: float | None, op: str, value: float
) -> None:
    threshold = parse_threshold(text)
    assert threshold.metric.kind is Kind.LATENCY
    assert (threshold.metric.name, threshold.metric.row, threshold.metric.q) == (name, row, q)
    assert (threshold.op, threshold.value) == (op, pytest.approx(value))
    assert not threshold.optional
    assert str(threshold) == text


@pytest.mark.parametrize(
    ("text", "kind", "subject", "value"),
    [
        ("rate(4xx) < 1%", Kind.SHARE, "4xx", 0.01),
        ("rate(5XX, RCPT) < 0.1%", Kind.SHARE, "5xx", 0.001),
        ("rate(421) < 0.5%", Kind.SHARE, "421", 0.005),
        ("rate(errors) < 0.1%", Kind.SHARE, "errors", 0.001),
        ("rate(dropped) == 0", Kind.SHARE, "dropped", 0.0),
        ("throughput > 800/s", Kind.THROUGHPUT, "messages", 800.0),
        ("throughput > 48000/m", Kind.THROUGHPUT, "messages", 800.0),
        ("throughput(sessions) >= 100", Kind.THROUGHPUT, "sessions", 100.0),
        ("sessions/s >= 100", Kind.THROUGHPUT, "sessions", 100.0),
    ],
)
def test_rate_and_throughput_forms(text: str, kind: Kind, subject: str, value: float) -> None:
    threshold = parse_threshold(text)
    assert threshold.metric.kind is kind
    assert threshold.metric.subject == subject
    assert threshold.value == pytest.approx(value)


def test_counts_and_optional_marks() -> None:
    dropped = parse_threshold("dropped == 0")
    assert dropped.metric.kind is Kind.COUNT and dropped.metric.name == "dropped"
    assert parse_threshold("messages accepted > 10").metric.name == "messages_accepted"
    assert parse_threshold("p99(AUTH) < 50ms optional").optional
    assert parse_threshold("p99(AUTH)? < 50ms").optional
    assert parse_threshold("  p99(AUTH)   <  50ms  ").text == "p99(AUTH) < 50ms"


def test_only_counts_past_an_upper_bound_are_final_part_way() -> None:
    assert parse_threshold("dropped == 0").final_when_failing
    assert parse_threshold("failed < 10").final_when_failing
    assert not parse_threshold("started > 100").final_when_failing
    assert parse_threshold("throughput > 100/s").final_when_failing


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("p99(DTA) < 5ms", "unknown command or measure 'DTA'"),
        ("p99(DATA) < 5", "has no unit: write 5ms or 5s"),
        ("p99 < 5ms", "p99 of what?"),
        ("p0(DATA) < 5ms", "a percentile lies above 0"),
        ("p99(DATA, intended) < 5ms", "DATA is a command"),
        ("p99(message, service) < 5ms", "only commands have a service time"),
        ("rate(4xx) < 200%", "between 0% and 100%"),
        ("rate(6xx) < 1%", "expected a reply class"),
        ("rate(errors, RCPT) < 1%", "over whole sessions"),
        ("throughput > fast", "expected a rate"),
        ("dropped = 0", "did you mean '=='"),
        ("dropped == 0.5", "whole number"),
        ("latency < 5ms", "unknown metric 'latency'"),
        ("p99(DATA)", "expected METRIC OPERATOR VALUE"),
        ("p99(DATA) <", "value to compare with is missing"),
    ],
)
def test_bad_expressions_are_named_and_explained(text: str, says: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    assert says in str(caught.value)
    assert repr(" ".join(text.split())) in str(caught.value)


def test_a_scenario_thresholds_table_reads_and_writes_back() -> None:
    text = """
[thresholds]
checks = ["p99(DATA) < 250ms", "rate(4xx) < 1%", "p99(AUTH) < 50ms optional"]
abort_on_fail = true
abort_grace = "5s"
"""
    scenario = parse_scenario(text, file="ci.toml")
    settings = scenario.thresholds
    assert [str(c) for c in settings.checks] == [
        "p99(DATA) < 250ms",
        "rate(4xx) < 1%",
        "p99(AUTH) < 50ms optional",
    ]
    assert settings.abort_on_fail and settings.abort_grace == 5.0
    again = parse_scenario(scenario_to_toml(scenario), file="again.toml")
    assert again == scenario
    assert [str(c) for c in again.thresholds.checks] == [str(c) for c in settings.checks]
    plain = default_scenario()
    assert parse_scenario(scenario_to_toml(plain), default_name="default") == plain


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ('[thresholds]\nchecks = ["p99(DTA) < 1s"]', "thresholds.checks[0]", "'DTA'"),
        ('[thresholds]\nchecks = ["p99(DATA) < 1s", 3]', "thresholds.checks[1]", "integer"),
        ('[thresholds]\nchecks = "p99(DATA) < 1s"', "thresholds.checks", "expected an array"),
        ("[thresholds]\nabort_on_fail = 1", "thresholds.abort_on_fail", "true or false"),
        ('[thresholds]\nabort_grace = "soon"', "thresholds.abort_grace", "a duration"),
        ("[thresholds]\ncheck = []", "thresholds.check", "did you mean 'checks'"),
    ],
)
def test_scenario_threshold_errors_name_file_and_key(toml: str, key: str, says: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(toml, file="ci.toml")
    assert caught.value.file == "ci.toml"
    assert caught.value.key == key
    assert says in str(caught.value)


def test_the_documented_thresholds_table_loads() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
    text = docs.read_text(encoding="utf-8")
    block = text.split("```toml\n[thresholds]")[1].split("```", 1)[0]
    settings = parse_scenario("[thresholds]" + block, file="docs/scenarios.md").thresholds
    assert len(settings.checks) == 4 and settings.checks[-1].optional
    assert not settings.abort_on_fail and settings.abort_grace == 10.0
