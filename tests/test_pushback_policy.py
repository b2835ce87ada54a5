"""The sink's pushback decisions under a clock the test steps by hand, and the settings'
two forms ([sink] keys and sink flags) read, checked and written back."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from smtpbench.commands.sink import add_sink_arguments, config_from_args
from smtpbench.faults import FaultSpecError, parse_fault_table
from smtpbench.pushback import (
    KEYS,
    NO_PUSHBACK,
    OPTIONS,
    Pushback,
    PushbackError,
    RateLimit,
    parse_pushback_table,
)
from smtpbench.scenario import ScenarioError, load_scenario
from smtpbench.servers.sink_pushback import LinkThrottle, PushbackPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(**settings: object) -> tuple[PushbackPolicy, Counter[str], Clock]:
    counts: Counter[str] = Counter()
    clock = Clock()
    return PushbackPolicy(Pushback(**settings), counts, "mx.test", clock), counts, clock  # type: ignore[arg-type]


def test_the_message_rate_defers_the_one_over_the_limit_until_the_window_closes() -> None:
    rules, counts, clock = policy(client_message_rate=RateLimit(3, 60.0))
    assert [rules.mail("127.0.0.2") for _ in range(3)] == [None, None, None]
    clock.now += 59.9
    deferral = rules.mail("127.0.0.2")
    assert deferral is not None
    assert (deferral.code, deferral.enhanced) == (450, "4.7.1")
    assert "too much mail from 127.0.0.2" in deferral.text
    assert rules.mail("127.0.0.3") is None  # another client has its own window
    clock.now += 0.1  # 60 s after the window opened: a new one
    assert rules.mail("127.0.0.2") is None
    assert counts == {"client message rate": 1}


def test_the_connection_rate_counts_refused_attempts_too() -> None:
    rules, counts, clock = policy(client_connection_rate=RateLimit(2, 60.0))
    assert rules.open_session("127.0.0.2") is None
    rules.close_session("127.0.0.2")
    assert rules.open_session("127.0.0.2") is None
    rules.close_session("127.0.0.2")
    refused = rules.open_session("127.0.0.2")
    assert refused is not None
    assert (refused.code, refused.enhanced, refused.reason) == (
        421,
        "4.7.0",
        "client connection rate",
    )
    assert refused.text == "mx.test Error: too many connections from 127.0.0.2"
    clock.now += 30
    assert rules.open_session("127.0.0.2") is not None  # still the same window
    clock.now += 30
    assert rules.open_session("127.0.0.2") is None
    assert counts == {"client connection rate": 2}
    assert rules.sessions == 1


def test_the_connection_limit_counts_open_sessions_per_client() -> None:
    rules, counts, _ = policy(client_connection_limit=2)
    assert rules.open_session("127.0.0.2") is None
    assert rules.open_session("127.0.0.2") is None
    refused = rules.open_session("127.0.0.2")
    assert refused is not None and refused.code == 421 and refused.enhanced == "4.7.0"
    assert rules.open_session("127.0.0.3") is None
    rules.close_session("127.0.0.2")
    assert rules.open_session("127.0.0.2") is None
    assert counts == {"client connection limit": 1}
    assert rules.open_by_client == {"127.0.0.2": 2, "127.0.0.3": 1}


def test_max_sessions_counts_every_client_and_is_checked_first() -> None:
    rules, counts, _ = policy(max_sessions=2, client_connection_rate=RateLimit(1, 60.0))
    assert rules.open_session("127.0.0.2") is None
    assert rules.open_session("127.0.0.3") is None
    refused = rules.open_session("127.0.0.4")
    assert refused is not None and refused.reason == "max sessions"
    assert "too many sessions" in refused.text
    rules.close_session("127.0.0.3")
    # The refused attempt never reached the rate count: 127.0.0.4's first is still to come.
    assert rules.open_session("127.0.0.4") is None
    assert counts == {"max sessions": 1}


def test_greylisting_defers_a_triplet_until_the_delay_has_passed_then_remembers_it() -> None:
    rules, counts, clock = policy(greylist=300.0)
    first = rules.recipient("127.0.0.2", "a@x.test", "b@y.test")
    assert first is not None
    assert (first.code, first.enhanced) == (450, "4.7.1")
    assert first.text.startswith("<b@y.test>: Recipient address rejected: Greylisted")
    clock.now += 299.9
    assert rules.recipient("127.0.0.2", "A@X.test", "B@y.TEST") is not None  # same triplet
    clock.now += 0.1
    assert rules.recipient("127.0.0.2", "a@x.test", "b@y.test") is None
    clock.now += 86400
    assert rules.recipient("127.0.0.2", "a@x.test", "b@y.test") is None  # remembered
    # Any part different is a new triplet, first seen now.
    assert rules.recipient("127.0.0.3", "a@x.test", "b@y.test") is not None
    assert rules.recipient("127.0.0.2", "", "b@y.test") is not None
    assert rules.recipient("127.0.0.2", "a@x.test", "c@y.test") is not None
    assert counts == {"greylist": 5}


def test_the_tarpit_holds_replies_once_the_errors_reach_the_limit() -> None:
    rules, counts, _ = policy(tarpit_after=3, tarpit_delay=2.5)
    assert [rules.tarpit(errors) for errors in range(5)] == [0.0, 0.0, 0.0, 2.5, 2.5]
    assert counts == {"tarpit": 2}


def test_nothing_is_deferred_without_settings() -> None:
    rules, counts, _ = policy()
    for _ in range(100):
        assert rules.open_session("127.0.0.2") is None
        assert rules.mail("127.0.0.2") is None
        assert rules.recipient("127.0.0.2", "a@x.test", "b@y.test") is None
        assert rules.tarpit(100) == 0.0
    assert not counts


def test_the_throttle_paces_reads_to_the_rate() -> None:
    throttle = LinkThrottle(1000)
    assert throttle.wait(500, now=10.0) == pytest.approx(0.5)
    # Read again at once: waits for both reads' share.
    assert throttle.wait(500, now=10.0) == pytest.approx(1.0)
    # An idle link earns no credit beyond now.
    assert throttle.wait(100, now=100.0) == pytest.approx(0.1)
    assert throttle.read_size(65536) == 1024
    assert LinkThrottle(10_000_000).read_size(65536) == 65536


# -- the settings' two forms ------------------------------------------------------

FULL = Pushback(
    client_connection_limit=5,
    client_connection_rate=RateLimit(30, 60.0),
    client_message_rate=RateLimit(7, 1.0),
    greylist=0.3,
    tarpit_after=10,
    tarpit_delay=1.5,
    max_sessions=100,
    throttle=65536,
    no_extension=("PIPELINING", "DSN"),
    maildir="received",
    maildir_limit=20,
)


def test_every_setting_has_one_option() -> None:
    assert set(KEYS) == {f.name for f in dataclasses.fields(Pushback)}
    assert len(OPTIONS) == len(KEYS)


def test_the_table_form_reads_back_to_the_same_settings() -> None:
    table = FULL.to_table()
    assert table["client_message_rate"] == "7/s"
    assert table["greylist"] == "300ms"
    assert table["no_extension"] == ["PIPELINING", "DSN"]
    assert parse_pushback_table(table) == FULL
    plan = parse_fault_table({**table, "delay": {"DATA": "5ms"}})
    assert plan.pushback == FULL
    assert parse_fault_table(plan.to_table()) == plan
    assert NO_PUSHBACK.to_table() == {} and NO_PUSHBACK.to_argv() == []


def _flags(argv: list[str]) -> Pushback:
    parser = argparse.ArgumentParser()
    add_sink_arguments(parser)
    return config_from_args(parser.parse_args(argv)).pushback


def test_the_flag_form_reads_back_to_the_same_settings() -> None:
    argv = FULL.to_argv()
    assert argv.count("--no-extension") == 2
    assert _flags(argv) == FULL
    plan = parse_fault_table(FULL.to_table())
    assert _flags(plan.to_argv()) == FULL
    assert _flags(["--client-message-rate", "100", "--no-extension", "chunking"]) == Pushback(
        client_message_rate=RateLimit(100, 60.0), no_extension=("CHUNKING",)
    )


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("client_connection_limit", 0, "1 or more"),
        ("client_connection_rate", "30/fortnight", "30/min"),
        ("client_message_rate", "0/min", "at least 1"),
        ("greylist", "soon", "duration"),
        ("greylist", 0, "longer than 0"),
        ("throttle", "fast", "bytes per second"),
        ("no_extension", ["PIPELINING", "XFORWARD"], "XFORWARD"),
        ("maildir", "", "directory"),
        ("max_sessions", True, "whole number"),
    ],
)
def test_a_bad_value_names_its_key(key: str, value: object, says: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_table({key: value})
    assert caught.value.key == key
    assert says in caught.value.message


def test_settings_that_need_another_are_named() -> None:
    with pytest.raises(PushbackError, match="tarpit_delay: only means something with tarpit_after"):
        parse_pushback_table({"tarpit_delay": "2s"})
    with pytest.raises(
        FaultSpecError, match="--maildir-limit: only means something with --maildir"
    ):
        _flags(["--maildir-limit", "3"])


def test_a_scenario_names_the_sink_key(tmp_path: Path) -> None:
    path = tmp_path / "pushback.toml"
    path.write_text('[load]\nsessions = 1\n\n[sink]\ngreylist = "soon"\n')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    assert "sink.greylist" in str(caught.value)
    path.write_text("[load]\nsessions = 1\n\n[sink]\ngreylisting = 5\n")
    with pytest.raises(ScenarioError, match="did you mean 'greylist'"):
        load_scenario(str(path))
    path.write_text('[load]\nsessions = 1\n\n[sink]\ngreylist = "5m"\nno_extension = "CHUNKING"\n')
    scenario = load_scenario(str(path))
    assert scenario.sink.pushback == Pushback(greylist=300.0, no_extension=("CHUNKING",))
    assert scenario.sink.to_argv() == ["--greylist", "300s", "--no-extension", "CHUNKING"]
