"""Reading scenarios: shipped files, defaults, load-model rules and lookup by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench.protocol.steps import Step
from smtpbench.scenario import (
    IntRange,
    Load,
    Scenario,
    ScenarioError,
    SizeDistribution,
    Stage,
    Target,
    available_scenarios,
    default_scenario,
    load_scenario,
    parse_scenario,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.toml"))


def test_the_four_example_scenarios_are_shipped() -> None:
    names = {path.stem for path in SHIPPED}
    assert {"default", "newsletter-burst", "steady-relay", "slow-trickle"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_shipped_scenario_loads_and_targets_the_sink(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.source == str(path)
    assert scenario.description
    assert scenario.target.host is None  # runs anywhere
    assert scenario.load.duration is not None or scenario.load.sessions is not None


def test_default_toml_is_the_built_in_default() -> None:
    from_file = load_scenario("default", search_dirs=[SCENARIOS])
    assert from_file == default_scenario()
    assert from_file.source == str(SCENARIOS / "default.toml")
    assert default_scenario().source is None


def test_default_scenario_values() -> None:
    s = default_scenario()
    assert s.name == "default"
    assert s.target == Target(None, 25)
    assert (s.load.mode, s.load.rate, s.load.duration) == ("rate", 20.0, 20.0)
    assert s.session.messages == IntRange(1, 1)
    assert s.session.recipients == IntRange(1, 1)
    assert s.session.size == SizeDistribution.fixed(2048)


def test_newsletter_burst_is_a_ramp_with_many_recipients() -> None:
    s = load_scenario("newsletter-burst", search_dirs=[SCENARIOS])
    assert s.load.stages[0] == Stage(30.0, 100.0)
    assert s.load.duration == sum(stage.duration for stage in s.load.stages)
    assert s.load.rate == s.load.stages[-1].rate
    assert s.load.arrivals == "poisson"
    assert s.session.recipients == IntRange(10, 50)
    assert s.session.size.kind == "lognormal"
    assert s.is_success(Step.RCPT, 451) and not s.is_success(Step.RCPT, 550)


def test_steady_relay_reuses_connections() -> None:
    s = load_scenario("steady-relay", search_dirs=[SCENARIOS])
    assert s.session.messages == IntRange(1, 20)
    assert s.session.rset_between_messages


def test_slow_trickle_is_slow_and_sends_noops() -> None:
    s = load_scenario("slow-trickle", search_dirs=[SCENARIOS])
    assert s.load.rate <= 5
    assert s.session.noop > 0
    assert s.session.size.low >= 100 * 1024


def test_full_example_from_the_format_reference() -> None:
    s = parse_scenario(
        """
        name = "full"
        description = "every key"
        seed = 7
        [target]
        host = "127.0.0.1"
        port = 2525
        [load]
        start_rate = 0
        stages = [ { duration = "30s", rate = "100/s" }, { duration = "1m", rate = "500/s" } ]
        arrivals = "poisson"
        duration = "5m"
        sessions = 10000
        max_concurrency = 500
        backlog = 10000
        grace = "10s"
        [session]
        greeting = "helo"
        helo_name = "loadgen.example.net"
        messages = "1..5"
        recipients = "1..3"
        mail_from = "newsletter@example.com"
        rcpt_to = "user{counter:06d}@example.org"
        size = { distribution = "uniform", min = "1KiB", max = "50KiB" }
        subject = "Weekly news {session}"
        rset_between_messages = true
        noop = "5%"
        [success]
        RCPT = [250, 251, "4xx"]
        [timeouts]
        connect = "10s"
        "DATA end" = "10m"
        """
    )
    assert s.name == "full" and s.seed == 7
    assert s.target == Target("127.0.0.1", 2525)
    assert s.load == Load(
        stages=(Stage(30.0, 100.0), Stage(60.0, 500.0)),
        arrivals="poisson",
        duration=300.0,
        sessions=10000,
        max_concurrency=500,
    )
    assert s.session.greeting == "HELO"
    assert s.session.messages == IntRange(1, 5)
    assert s.session.noop == pytest.approx(0.05)
    assert s.session.size == SizeDistribution.uniform(1024, 50 * 1024)
    assert s.success[Step.RCPT] == frozenset({250, 251, *range(400, 500)})
    assert s.timeout(Step.CONNECT) == 10.0
    assert s.timeout(Step.DATA_END) == 600.0


def test_name_defaults_to_the_given_default() -> None:
    assert parse_scenario("", default_name="mine").name == "mine"


def test_concurrency_alone_selects_the_closed_model() -> None:
    load = parse_scenario('[load]\nconcurrency = 20\nduration = "1m"').load
    assert (load.mode, load.concurrency, load.duration) == ("concurrency", 20, 60.0)


def test_explicit_mode_is_accepted() -> None:
    load = parse_scenario('[load]\nmode = "concurrency"\nconcurrency = 3').load
    assert (load.mode, load.concurrency) == ("concurrency", 3)
    assert parse_scenario('[load]\nmode = "rate"\nrate = 5').load.rate == 5.0


def test_sessions_alone_runs_until_that_many() -> None:
    load = parse_scenario("[load]\nsessions = 100").load
    assert (load.duration, load.sessions) == (None, 100)


def test_stages_with_sessions_still_end_with_the_stages() -> None:
    text = '[load]\nsessions = 5\nstages = [{ duration = "10s", rate = 3 }]'
    load = parse_scenario(text).load
    assert (load.duration, load.sessions) == (10.0, 5)


def test_rate_units() -> None:
    assert parse_scenario('[load]\nrate = "1200/m"').load.rate == 20.0
    assert parse_scenario("[load]\nrate = 2.5").load.rate == 2.5


def test_messages_may_be_zero_for_connection_only_sessions() -> None:
    assert parse_scenario("[session]\nmessages = 0").session.messages == IntRange(0, 0)


def test_success_accepts_single_values_and_code_strings() -> None:
    s = parse_scenario('[success]\n"DATA end" = "2xx"\nmail = "250"')
    assert s.success[Step.DATA_END] == frozenset(range(200, 300))
    assert s.success[Step.MAIL] == frozenset({250})
    # Steps not named keep their defaults.
    assert s.success[Step.RCPT] == frozenset({250, 251})


def test_load_scenario_by_name_and_by_path(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('description = "x"\n[load]\nrate = 3\n')
    by_name = load_scenario("mine", search_dirs=[tmp_path])
    by_path = load_scenario(tmp_path / "mine.toml")
    assert by_name == by_path
    assert by_name.name == "mine" and by_name.load.rate == 3.0


def test_unknown_name_lists_what_was_tried_and_what_exists(tmp_path: Path) -> None:
    (tmp_path / "alpha.toml").write_text("")
    (tmp_path / "beta.toml").write_text("")
    with pytest.raises(ScenarioError) as caught:
        load_scenario("gamma", search_dirs=[tmp_path])
    text = str(caught.value)
    assert str(tmp_path / "gamma.toml") in text
    assert "available: alpha, beta" in text


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(missing, search_dirs=[SCENARIOS])
    assert caught.value.file == str(missing)
    assert "newsletter-burst" in str(caught.value)


def test_default_falls_back_to_the_built_in(tmp_path: Path) -> None:
    assert load_scenario("default", search_dirs=[tmp_path]) == default_scenario()


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)
    assert "UTF-8" in str(caught.value)


def test_available_scenarios() -> None:
    names = available_scenarios([SCENARIOS])
    assert "default" in names and names == sorted(names)


def test_scenario_methods() -> None:
    s = Scenario(name="x")
    assert s.is_success(Step.BANNER, 220) and not s.is_success(Step.BANNER, 554)
    assert s.is_success(Step.VRFY, 252)
    assert not s.is_success(Step.CONNECT, 220)
    assert s.timeout(Step.DATA) == 120.0
    assert s.timeout(Step.TLS) == 30.0
    assert s.timeout(Step.QUIT) == 300.0


def toml_blocks(markdown: str) -> list[str]:
    return [block.split("```", 1)[0] for block in markdown.split("```toml\n")[1:]]


def test_the_format_reference_examples_load() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
    blocks = toml_blocks(docs.read_text(encoding="utf-8"))
    complete = parse_scenario(blocks[0], file="docs/scenarios.md")
    assert complete.name == "newsletter-burst"
    assert complete.target.host == "127.0.0.1"
    sink = next(block for block in blocks if block.startswith("[sink]"))
    assert not parse_scenario(sink).sink.is_empty
    stages = next(block for block in blocks if block.startswith("start_rate"))
    assert len(parse_scenario("[load]\n" + stages).load.stages) == 3
    for line in next(block for block in blocks if block.startswith("size")).splitlines():
        assert parse_scenario("[session]\n" + line).session.size.kind != "fixed"
