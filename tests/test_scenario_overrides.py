"""with_overrides, summarize_load, and the Load model's own rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from smtpbench.faults import EMPTY_FAULTS, parse_fault_table
from smtpbench.scenario import (
    Load,
    Scenario,
    Stage,
    Target,
    default_scenario,
    parse_scenario,
    summarize_load,
    with_overrides,
)

RAMP = parse_scenario(
    """
    [load]
    stages = [ { duration = "30s", rate = "100/s" }, { duration = "1m", rate = "500/s" } ]
    arrivals = "poisson"
    max_concurrency = 500
    """
)


def test_no_overrides_changes_nothing() -> None:
    assert with_overrides(RAMP) == RAMP


def test_rate_switches_to_a_constant_open_model() -> None:
    closed = with_overrides(default_scenario(), concurrency=5)
    for base in (RAMP, closed):
        load = with_overrides(base, rate="300/s").load
        assert (load.mode, load.rate, load.stages, load.start_rate) == ("rate", 300.0, (), 0.0)
    assert with_overrides(RAMP, rate=12).load.max_concurrency == 500


def test_concurrency_switches_to_the_closed_model() -> None:
    load = with_overrides(RAMP, concurrency=20).load
    assert (load.mode, load.concurrency) == ("concurrency", 20)
    # Open-model settings cannot matter any more and are back to their defaults.
    assert (load.stages, load.max_concurrency, load.arrivals) == ((), 1000, "uniform")
    assert load.duration == 90.0  # the ramp's length stays the run's length


def test_duration_and_sessions() -> None:
    s = default_scenario()
    assert with_overrides(s, duration="5m").load.duration == 300.0
    assert with_overrides(s, duration=2.5).load.duration == 2.5
    by_count = with_overrides(s, sessions=1000).load
    assert (by_count.sessions, by_count.duration) == (1000, None)
    both = with_overrides(s, sessions=10, duration="1m").load
    assert (both.sessions, both.duration) == (10, 60.0)


def test_host_port_seed_and_cap() -> None:
    s = with_overrides(default_scenario(), host="mx.example.org", port=2525, seed=4)
    assert s.target == Target("mx.example.org", 2525)
    assert s.seed == 4
    assert with_overrides(s, port=25).target == Target("mx.example.org", 25)
    assert with_overrides(RAMP, max_concurrency=50).load.max_concurrency == 50


def test_host_drops_sink_faults() -> None:
    faulty = Scenario(name="f", sink=parse_fault_table({"delay": {"DATA": "5ms"}}))
    assert with_overrides(faulty, port=2525).sink == faulty.sink
    assert with_overrides(faulty, host="127.0.0.1").sink == EMPTY_FAULTS


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rate": 5, "concurrency": 5}, "exclude each other"),
        ({"rate": 0}, "above 0"),
        ({"rate": "fast"}, "expected a rate"),
        ({"concurrency": 0}, "at least 1"),
        ({"duration": 0}, "above 0"),
        ({"duration": "later"}, "expected a duration"),
        ({"sessions": 0}, "at least 1"),
        ({"seed": -1}, "at least 0"),
        ({"port": 0}, "65535"),
        ({"host": "a b"}, "host name"),
        ({"concurrency": 3, "max_concurrency": 9}, "concurrency instead"),
    ],
)
def test_bad_overrides(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        with_overrides(default_scenario(), **kwargs)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("scenario", "summary"),
    [
        (default_scenario(), "20/s for 20s (uniform arrivals), cap 1000"),
        (
            with_overrides(default_scenario(), rate=300, duration="5m", max_concurrency=500),
            "300/s for 5m (uniform arrivals), cap 500",
        ),
        (
            with_overrides(default_scenario(), concurrency=20, duration="1m"),
            "20 concurrent sessions for 1m",
        ),
        (
            with_overrides(default_scenario(), concurrency=1, sessions=1),
            "1 concurrent session until 1 session",
        ),
        (
            with_overrides(default_scenario(), rate="30/m", sessions=500, duration="1h"),
            "30/m until 500 sessions or 1h (uniform arrivals), cap 1000",
        ),
        (
            RAMP,
            "ramp 0/s -> 100/s over 30s -> 500/s over 1m, for 1m30s (poisson arrivals), cap 500",
        ),
        (
            with_overrides(RAMP, duration="5m"),
            "ramp 0/s -> 100/s over 30s -> 500/s over 1m (then held), for 5m "
            "(poisson arrivals), cap 500",
        ),
    ],
)
def test_summaries(scenario: Scenario, summary: str) -> None:
    assert summarize_load(scenario) == summary


def test_rate_at_follows_the_stages() -> None:
    stages = (Stage(10, 110), Stage(10, 110), Stage(20, 10))
    load = Load(start_rate=10, stages=stages, duration=None)
    assert load.rate_at(0) == 10
    assert load.rate_at(5) == pytest.approx(60)
    assert load.rate_at(15) == 110
    assert load.rate_at(30) == pytest.approx(60)
    assert load.rate_at(1000) == 10 == load.rate
    assert load.duration == 40 == load.ramp_duration
    assert Load(rate=7).rate_at(123) == 7
    assert Load(stages=stages).duration == 20.0  # an explicit duration is kept


def test_load_keeps_only_what_matters() -> None:
    closed = Load(mode="concurrency", concurrency=3, rate=99, arrivals="poisson", backlog=1)
    assert closed == Load(mode="concurrency", concurrency=3)
    assert Load(rate=5, concurrency=99) == Load(rate=5)
    assert Load(rate=5, start_rate=3).start_rate == 0.0  # no stages: nothing ramps from it
    assert Load(stages=(Stage(1, 4),), rate=99).rate == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda: Load(duration=None),
        lambda: Load(rate=0),
        lambda: Load(rate=float("inf")),
        lambda: Load(stages=(Stage(1, 0),)),
        lambda: Load(mode="open"),  # type: ignore[arg-type]
        lambda: Load(max_concurrency=0),
        lambda: Load(sessions=0),
        lambda: Stage(0, 1),
        lambda: Stage(1, -1),
        lambda: Target(port=0),
        lambda: Target(host=""),
        lambda: Scenario(name=""),
        lambda: Scenario(
            name="x", target=Target("h"), sink=parse_fault_table({"garbage": {"EHLO": "1%"}})
        ),
        lambda: replace(default_scenario(), timeouts=(1.0,)),
    ],
)
def test_invalid_models_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
