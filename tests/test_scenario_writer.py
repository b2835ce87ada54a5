"""scenario_to_toml: every scenario reads back equal, shipped ones included."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.faults import EMPTY_FAULTS, parse_fault_table
from smtpbench.protocol.steps import Step
from smtpbench.scenario import (
    IntRange,
    Load,
    Scenario,
    Session,
    SizeDistribution,
    Stage,
    Target,
    default_scenario,
    load_scenario,
    parse_scenario,
    scenario_to_toml,
    with_overrides,
)
from smtpbench.scenario.model import DEFAULT_SUCCESS, DEFAULT_TIMEOUTS, NO_REPLY_STEPS
from smtpbench.scenario.sizes import MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def round_trip(scenario: Scenario) -> Scenario:
    return parse_scenario(scenario_to_toml(scenario), default_name="unused")


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenarios_round_trip(path: Path) -> None:
    scenario = load_scenario(path)
    assert round_trip(scenario) == scenario


def test_output_is_explicit_and_readable() -> None:
    text = scenario_to_toml(default_scenario())
    data = tomllib.loads(text)
    assert data["name"] == "default"
    assert data["load"] == {
        "mode": "rate",
        "rate": "20/s",
        "arrivals": "uniform",
        "duration": "20s",
        "max_concurrency": 1000,
        "backlog": 10000,
        "grace": "10s",
    }
    assert data["session"]["size"] == "2KiB"
    assert data["success"]["DATA end"] == [250]
    assert data["timeouts"]["DATA end"] == "10m"
    assert set(data["timeouts"]) == {step.label for step in Step}
    assert "connect" not in data["success"]
    assert data["sink"] == {}


def test_closed_model_is_written_without_open_model_keys() -> None:
    scenario = with_overrides(default_scenario(), concurrency=7)
    data = tomllib.loads(scenario_to_toml(scenario))
    assert data["load"] == {
        "mode": "concurrency",
        "concurrency": 7,
        "duration": "20s",
        "grace": "10s",
    }
    assert round_trip(scenario) == scenario


def test_success_classes_are_written_as_classes() -> None:
    scenario = default_scenario().with_success(Step.RCPT, frozenset({250, *range(400, 500)}))
    data = tomllib.loads(scenario_to_toml(scenario))
    assert data["success"]["RCPT"] == ["4xx", 250]


def test_sink_faults_round_trip() -> None:
    plan = parse_fault_table(
        {
            "delay": {"DATA": "50ms", "DATA end": "1ms..3ms"},
            "reply": {"RCPT": "451:1%", "MAIL": ["451:1%", "554:0.5%"]},
            "disconnect": {"DATA end": "0.1%"},
            "stall": {"MAIL": "1s@200"},
            "shutdown_after": 100,
        }
    )
    scenario = Scenario(name="faulty", sink=plan)
    assert round_trip(scenario) == scenario
    assert round_trip(scenario).sink == plan


# -- property: any valid scenario reads back equal --------------------------------

finite = {"allow_nan": False, "allow_infinity": False}
positive_floats = st.floats(min_value=1e-6, max_value=1e7, **finite)
sizes = st.integers(MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE)


@st.composite
def ranges(draw: st.DrawFn, least: int) -> IntRange:
    low = draw(st.integers(least, 50))
    return IntRange(low, draw(st.integers(low, 100)))


@st.composite
def size_distributions(draw: st.DrawFn) -> SizeDistribution:
    kind = draw(st.sampled_from(["fixed", "uniform", "lognormal", "choice"]))
    if kind == "fixed":
        return SizeDistribution.fixed(draw(sizes))
    if kind == "uniform":
        low = draw(sizes)
        return SizeDistribution.uniform(low, draw(st.integers(low, MAX_MESSAGE_SIZE)))
    if kind == "lognormal":
        low = draw(sizes)
        median = draw(st.integers(low, MAX_MESSAGE_SIZE))
        high = draw(st.integers(median, MAX_MESSAGE_SIZE))
        sigma = draw(st.floats(min_value=1e-3, max_value=10, **finite))
        return SizeDistribution.lognormal(median, sigma, low=low, high=high)
    values = tuple(draw(st.lists(sizes, min_size=1, max_size=5)))
    weights = draw(
        st.none()
        | st.lists(
            st.floats(min_value=0, max_value=1e6, **finite),
            min_size=len(values),
            max_size=len(values),
        ).filter(any)
    )
    return SizeDistribution.choice(values, tuple(weights) if weights is not None else None)


@st.composite
def loads(draw: st.DrawFn) -> Load:
    ends = draw(st.sampled_from(["duration", "sessions", "both"]))
    duration = draw(positive_floats) if ends != "sessions" else None
    sessions = draw(st.integers(1, 10**9)) if ends != "duration" else None
    grace = draw(st.floats(min_value=0, max_value=1e5, **finite))
    if draw(st.booleans()):
        return Load(
            mode="concurrency",
            concurrency=draw(st.integers(1, 10**6)),
            duration=duration,
            sessions=sessions,
            grace=grace,
        )
    stages: tuple[Stage, ...] = ()
    start_rate = 0.0
    if draw(st.booleans()):
        stages = tuple(
            draw(
                st.lists(
                    st.builds(Stage, positive_floats, st.floats(0, 1e6, **finite)),
                    min_size=1,
                    max_size=4,
                )
            )
        )
        start_rate = draw(st.floats(0, 1e6, **finite))
        if start_rate == 0 and not any(s.rate for s in stages):
            start_rate = 1.0
        if ends == "sessions" and draw(st.booleans()):
            duration = None  # resolved to the sum of the stages
    return Load(
        mode="rate",
        rate=draw(positive_floats),
        start_rate=start_rate,
        stages=stages,
        arrivals=draw(st.sampled_from(["uniform", "poisson"])),
        duration=duration,
        sessions=sessions,
        max_concurrency=draw(st.integers(1, 10**6)),
        backlog=draw(st.integers(0, 10**7)),
        grace=grace,
    )


sessions_strategy = st.builds(
    Session,
    greeting=st.sampled_from(["EHLO", "HELO"]),
    helo_name=st.sampled_from(["smtpbench.localhost", "mx{random}.example.net", "h{session:x}"]),
    messages=ranges(0),
    recipients=ranges(1),
    mail_from=st.sampled_from(["a@b.test", "s{session}-{message}@x.test", "q{{x}}+tag@y.test"]),
    rcpt_to=st.sampled_from(["user{counter:06d}@example.org", "r{rcpt}.{random}@x.test"]),
    size=size_distributions(),
    subject=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).filter(
        lambda s: "{" not in s and "}" not in s
    ),
    rset_between_messages=st.booleans(),
    noop=st.floats(0, 1, **finite),
)

reply_steps = [step for step in Step if step not in NO_REPLY_STEPS]
code_sets = st.frozensets(st.integers(200, 599), min_size=1, max_size=5) | st.sampled_from(
    [frozenset(range(200, 300)), frozenset({250, *range(400, 500)})]
)


@st.composite
def successes(draw: st.DrawFn) -> tuple[frozenset[int], ...]:
    success = list(DEFAULT_SUCCESS)
    for step in draw(st.lists(st.sampled_from(reply_steps), unique=True, max_size=4)):
        success[step] = draw(code_sets)
    return tuple(success)


@st.composite
def timeouts(draw: st.DrawFn) -> tuple[float, ...]:
    values = list(DEFAULT_TIMEOUTS)
    for step in draw(st.lists(st.sampled_from(list(Step)), unique=True, max_size=4)):
        values[step] = draw(positive_floats)
    return tuple(values)


sinks = st.sampled_from(
    [
        EMPTY_FAULTS,
        parse_fault_table({"delay": {"DATA": "50ms"}, "reply": {"RCPT": "451:1%"}}),
        parse_fault_table({"garbage": {"EHLO": "1%"}, "shutdown_after": 5}),
    ]
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    host = draw(st.none() | st.sampled_from(["127.0.0.1", "mx.example.org", "::1"]))
    return Scenario(
        name=draw(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
        ),
        description=draw(st.text(max_size=40)),
        seed=draw(st.none() | st.integers(0, 2**63 - 1)),
        target=Target(host, draw(st.integers(1, 65535))),
        load=draw(loads()),
        session=draw(sessions_strategy),
        success=draw(successes()),
        timeouts=draw(timeouts()),
        sink=draw(sinks) if host is None else EMPTY_FAULTS,
    )


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_scenario_round_trips(scenario: Scenario) -> None:
    assert round_trip(scenario) == scenario
