"""Threshold expressions: every form parses to what it says, every mistake is named, and a
scenario's [thresholds] table reads and writes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench.protocol.steps import Step
from smtpbench.scenario import ScenarioError, default_scenario, parse_scenario, scenario_to_toml
from smtpbench.thresholds import (
    MESSAGE_ROW,
    SESSION_ROW,
    START_LAG_ROW,
    Kind,
    Metric,
    Threshold,
    ThresholdError,
    ThresholdSettings,
    format_value,
    parse_latency_row,
    parse_threshold,
    parse_thresholds,
    row_label,
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


# -- what a threshold shows and how it judges ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        (Kind.SHARE, 0.01, "1%"),
        (Kind.SHARE, 0.001, "0.1%"),
        (Kind.SHARE, 0.1234, "12.3%"),
        (Kind.SHARE, 1.0, "100%"),
        (Kind.SHARE, 0.0, "0%"),
        (Kind.THROUGHPUT, 812.44, "812.4/s"),
        (Kind.THROUGHPUT, 12345.0, "12,345.0/s"),
        (Kind.COUNT, 12.0, "12"),
        (Kind.COUNT, 1234567.0, "1,234,567"),
        (Kind.LATENCY, 0.25, "250ms"),
        (Kind.SHARE, None, "no data"),
        (Kind.LATENCY, float("nan"), "no data"),
    ],
)
def test_values_are_shown_in_their_units(kind: Kind, value: float | None, shown: str) -> None:
    assert format_value(kind, value) == shown


@pytest.mark.parametrize(
    ("metric", "op", "value", "shown"),
    [
        (Metric("rate", subject="4xx"), "<", 0.01, "rate(4xx) < 1%"),
        (Metric("rate", subject="451", step=Step.RCPT), "<=", 0.005, "rate(451, RCPT) <= 0.5%"),
        (Metric("percentile", row=Step.DATA, q=99.9), "<", 0.25, "p99.9(DATA) < 250ms"),
        (Metric("mean", row=MESSAGE_ROW), ">", 1.5, "mean(message) > 1.50s"),
        (Metric("max", row=START_LAG_ROW), "<", 0.01, "max(start lag) < 10.0ms"),
        (Metric("min", row=SESSION_ROW), "!=", 2.0, "min(session) != 2.00s"),
        (Metric("throughput", subject="messages"), ">", 800.0, "throughput > 800.0/s"),
        (Metric("throughput", subject="sessions"), ">=", 5.0, "throughput(sessions) >= 5.0/s"),
        (Metric("dropped"), "==", 0.0, "dropped == 0"),
    ],
)
def test_a_threshold_built_in_code_describes_itself(
    metric: Metric, op: str, value: float, shown: str
) -> None:
    assert str(Threshold(metric, op, value)) == shown


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        (">", False, False, True),
        (">=", False, True, True),
        ("==", False, True, False),
        ("!=", True, False, True),
    ],
)
def test_each_operator_compares_the_measure_with_the_limit(
    op: str, below: bool, equal: bool, above: bool
) -> None:
    threshold = parse_threshold(f"dropped {op} 10")
    assert threshold.op == op and threshold.value == 10.0
    assert [threshold.passes(v) for v in (9.0, 10.0, 11.0)] == [below, equal, above]


@pytest.mark.parametrize(
    ("text", "final"),
    [
        ("dropped < 5", True),
        ("dropped <= 5", True),
        ("dropped == 5", True),
        ("started > 5", False),
        ("started >= 5", False),
        ("started != 5", False),
        ("p99(DATA) > 1ms", True),
        ("rate(4xx) > 1%", True),
    ],
)
def test_which_failures_are_final_part_way(text: str, final: bool) -> None:
    assert parse_threshold(text).final_when_failing is final


@pytest.mark.parametrize(
    ("text", "kind", "view", "better_higher"),
    [
        ("p99(DATA) < 1s", Kind.LATENCY, "service", False),
        ("p99(message) < 1s", Kind.LATENCY, "from intended start", False),
        ("max(session) < 1s", Kind.LATENCY, "from intended start", False),
        ("rate(2xx) > 99%", Kind.SHARE, None, True),
        ("rate(4xx) < 1%", Kind.SHARE, None, False),
        ("rate(errors) < 1%", Kind.SHARE, None, False),
        ("throughput > 1/s", Kind.THROUGHPUT, None, True),
        ("throughput(sessions) > 1/s", Kind.THROUGHPUT, None, True),
        ("messages_accepted > 1", Kind.COUNT, None, True),
        ("bytes sent > 1", Kind.COUNT, None, True),
        ("scheduled > 1", Kind.COUNT, None, True),
        ("started > 1", Kind.COUNT, None, True),
        ("completed > 1", Kind.COUNT, None, True),
        ("recipients accepted > 1", Kind.COUNT, None, True),
        ("dropped < 1", Kind.COUNT, None, False),
        ("failed < 1", Kind.COUNT, None, False),
        ("messages rejected < 1", Kind.COUNT, None, False),
        ("messages aborted < 1", Kind.COUNT, None, False),
        ("recipients rejected < 1", Kind.COUNT, None, False),
    ],
)
def test_kind_view_and_which_way_is_better(
    text: str, kind: Kind, view: str | None, better_higher: bool
) -> None:
    metric = parse_threshold(text).metric
    assert metric.kind is kind
    assert metric.view == view
    assert metric.higher_is_better is better_higher


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("message", MESSAGE_ROW),
        ("Messages", MESSAGE_ROW),
        ("session", SESSION_ROW),
        ("sessions", SESSION_ROW),
        ("start lag", START_LAG_ROW),
        ("start_lag", START_LAG_ROW),
        ("lag", START_LAG_ROW),
        (" DATA end ", Step.DATA_END),
        ("rcpt", Step.RCPT),
    ],
)
def test_latency_rows_by_name(text: str, row: int) -> None:
    assert parse_latency_row(text) == row
    assert row_label(MESSAGE_ROW) == "message"
    assert row_label(SESSION_ROW) == "session"
    assert row_label(START_LAG_ROW) == "start lag"
    assert row_label(Step.MAIL) == "MAIL"


def test_an_unknown_row_lists_what_is_known() -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_latency_row(" nope ")
    message = str(caught.value)
    assert message.startswith("unknown command or measure 'nope'; known: ")
    assert message.endswith(", message, session, start lag")
    assert "DATA end" in message


@pytest.mark.parametrize(
    ("text", "subject", "step"),
    [
        ("rate(errors) < 1%", "errors", None),
        ("rate(dropped) < 1%", "dropped", None),
        ("rate(2xx) > 1%", "2xx", None),
        ("rate(3xx, DATA) > 1%", "3xx", Step.DATA),
        ("rate(550, RCPT) < 1%", "550", Step.RCPT),
        ("rate(250) > 1%", "250", None),
        ("rate( 4XX , data end ) < 1%", "4xx", Step.DATA_END),
    ],
)
def test_rate_subjects_and_commands(text: str, subject: str, step: Step | None) -> None:
    metric = parse_threshold(text).metric
    assert (metric.name, metric.subject, metric.step, metric.row) == ("rate", subject, step, None)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rate(199) < 1%", "expected a reply class (2xx, 3xx, 4xx, 5xx), a reply code such as 421"),
        ("rate(600) < 1%", "a reply code such as 421, errors (failed sessions) or dropped"),
        ("rate(2500) < 1%", "rate of '2500'"),
        ("rate(dropped, RCPT) < 1%", "rate(dropped) is over whole sessions, not one command"),
        ("rate(4xx, RCPT, MAIL) < 1%", "expected rate(WHAT) or rate(CODES, COMMAND)"),
        ("rate(4xx, NOPE) < 1%", "NOPE"),
        ("throughput(bytes) > 1/s", "throughput counts messages or sessions"),
        ("throughput(messages, x) > 1/s", "throughput counts messages or sessions"),
        ("p101(DATA) < 1s", "a percentile lies above 0 and up to 100, got p101"),
        ("p99() < 1s", "name a command or measure, such as DATA or message"),
        ("p99(DATA, service, x) < 1s", "expected (COMMAND) or (COMMAND, VIEW), got 3 arguments"),
        ("p99(DATA, sideways) < 1s", "unknown view 'sideways': 'service' (commands) or"),
        ("p99(DATA, intended start) < 1s", "DATA is a command, timed as service time; message"),
        ("p99(message, service) < 1s", "message is measured from intended start; only"),
        ("mean < 1s", "mean of what? Name a command, such as mean(DATA)"),
        ("p99.9 < 1s", "p99.9 of what?"),
        ("median(DATA) < 1s", "unknown metric 'median'; expected p50, p99, p99.9, mean, min"),
        ("dropped < -1", "expected a whole number, got '-1'"),
        ("throughput > inf/s", "expected a finite value, got 'inf/s'"),
        ("throughput > 1e400/s", "expected a finite value"),
        ("p99(DATA) < 1e3", "has no unit: write 1e3ms or 1e3s"),
        ("< 5ms", "expected METRIC OPERATOR VALUE, such as p99("),
    ],
)
def test_more_mistakes_are_named_and_explained(text: str, says: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    assert says in str(caught.value)


def test_not_text_is_refused() -> None:
    with pytest.raises(ThresholdError, match="expected a threshold such as p99"):
        parse_threshold(42)  # type: ignore[arg-type]


def test_percentile_bounds_and_forms() -> None:
    assert parse_threshold("p100(DATA) < 1s").metric.q == 100.0
    assert parse_threshold("p0.1(DATA) < 1s").metric.q == 0.1
    assert parse_threshold("P99(DATA) < 1s").metric.q == 99.0
    assert parse_threshold("p99 (DATA) < 1s").metric.row == Step.DATA
    assert parse_threshold("p99(DATA, SERVICE) < 1s").metric.view == "service"
    assert parse_threshold("p99(message, from intended start) < 1s").metric.row == MESSAGE_ROW
    assert parse_threshold("MEAN(DATA) < 1s").metric.name == "mean"
    assert parse_threshold("messages/s > 1/s").metric == Metric("throughput", subject="messages")
    assert parse_threshold("Throughput(Sessions) > 1/s").metric.subject == "sessions"


def test_the_optional_word_and_mark() -> None:
    marked = parse_threshold("p99(AUTH) ? < 50ms")
    assert marked.optional and marked.metric.row == Step.AUTH
    worded = parse_threshold("p99(AUTH) < 50ms   Optional")
    assert worded.optional and worded.value == pytest.approx(0.05)
    assert worded.text == "p99(AUTH) < 50ms Optional"
    assert not parse_threshold("p99(AUTH) < 50ms").optional


def test_parse_thresholds_keeps_the_order() -> None:
    parsed = parse_thresholds(["dropped == 0", "p99(DATA) < 1s"])
    assert [str(t) for t in parsed] == ["dropped == 0", "p99(DATA) < 1s"]
    assert parse_thresholds([]) == ()


def test_settings_validate_the_grace_and_add_checks() -> None:
    settings = ThresholdSettings([parse_threshold("dropped == 0")], True, 3)  # type: ignore[arg-type]
    assert isinstance(settings.checks, tuple) and isinstance(settings.abort_grace, float)
    more = settings.with_checks([parse_threshold("failed == 0")])
    assert [str(t) for t in more.checks] == ["dropped == 0", "failed == 0"]
    assert more.abort_on_fail is True and more.abort_grace == 3.0
    assert ThresholdSettings().abort_grace == 10.0 and not ThresholdSettings().abort_on_fail
    assert ThresholdSettings(abort_grace=0).abort_grace == 0.0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="abort_grace must be 0 or more seconds"):
            ThresholdSettings(abort_grace=bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rate(4xx, NOPE) < 1%",
            "'rate(4xx, NOPE) < 1%': unknown SMTP step 'NOPE'; known steps: connect, banner, "
            "HELO, EHLO, LHLO, STARTTLS, TLS handshake, AUTH, MAIL, RCPT, DATA, DATA end, BDAT, "
            "RSET, NOOP, VRFY, EXPN, QUIT, XCLIENT",
        ),
        (
            "rate(4xx, A, B) < 1%",
            "'rate(4xx, A, B) < 1%': expected rate(WHAT) or rate(CODES, COMMAND)",
        ),
        ("p99() < 1s", "'p99() < 1s': name a command or measure, such as DATA or message"),
        (
            "p99(DATA, sideways) < 1s",
            "'p99(DATA, sideways) < 1s': unknown view 'sideways': 'service' (commands) or "
            "'intended' (message, session, start lag)",
        ),
        ("p99(DATA) <", "'p99(DATA) <': the value to compare with is missing"),
        (
            "throughput(x) > 1/s",
            "'throughput(x) > 1/s': throughput counts messages or sessions: throughput(sessions)",
        ),
        ("p99(DATA) < 1E3", "'p99(DATA) < 1E3': 1E3 has no unit: write 1E3ms or 1E3s"),
    ],
)
def test_error_messages_in_full(text: str, message: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    assert str(caught.value) == message


def test_throughput_of_messages_written_out() -> None:
    metric = parse_threshold("throughput(Messages) > 1/s").metric
    assert metric == Metric("throughput", subject="messages")
    assert str(metric) == "throughput"


def test_a_threshold_is_optional_only_when_marked() -> None:
    assert parse_threshold("dropped == 0").optional is False
    assert parse_threshold("dropped? == 0").optional is True


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("throughput > 10/s", "messages accepted per second over the whole run"),
        ("throughput(sessions) > 10/s", "sessions started per second over the whole run"),
        ("dropped == 0", "sessions due but never started: the backlog was full"),
        ("messages_rejected == 0", "messages refused, at the end of data or before it"),
        ("bytes_sent > 0", "bytes sent to the server, commands and content"),
    ],
)
def test_every_metric_says_what_it_measures(text: str, meaning: str) -> None:
    from smtpbench.thresholds import COUNTERS

    assert parse_threshold(text).metric.meaning == meaning
    # The thresholds table prints a meaning beside every threshold: none is left blank.
    for name in COUNTERS:
        assert parse_threshold(f"{name} == 0").metric.meaning, name
