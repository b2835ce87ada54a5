"""Connecting from a pool of local addresses (``target.source``, ``--source``): what the
pool may be written as, that the server sees each address in turn, and that an address
the machine does not have stops the run before its first session."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.scenario import parse_scenario
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.sources import parse_sources
from smtpbench.scenario.writer import scenario_to_toml
from tests.commands import TRACEBACK, smtpbench
from tests.runs import run_against, scenario_for
from tests.servers import aiosmtpd_serving, free_port


@dataclass
class PeerHandler:
    """aiosmtpd handler noting the client address of every message."""

    peers: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.peers[session.peer[0]] += 1  # type: ignore[attr-defined]
        return "250 2.0.0 OK"


def test_a_pool_is_addresses_ranges_and_blocks_in_the_order_written() -> None:
    assert parse_sources("127.0.0.2-127.0.0.4") == ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    # A block's hosts: not its network or broadcast address.
    assert parse_sources("127.0.1.0/29") == tuple(f"127.0.1.{n}" for n in range(1, 7))
    assert parse_sources("127.0.0.9/32") == ("127.0.0.9",)
    assert parse_sources(" 127.0.0.9 , 127.0.0.3-127.0.0.4") == (
        "127.0.0.9",
        "127.0.0.3",
        "127.0.0.4",
    )
    assert parse_sources("::1") == ("::1",)
    assert len(parse_sources("10.0.0.0-10.0.255.255")) == 65536


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("127.0.0.5-127.0.0.2", "runs backwards"),
        ("mail.example", "is not an IP address"),
        ("127.0.0.1,::1", "mixes IPv4 and IPv6"),
        ("127.0.0.1, 127.0.0.1", "more than once"),
        ("127.0.0.1,", "separated by commas"),
        ("10.0.0.0/8", "more than 65536"),
        ("127.0.0.0/33", "not a CIDR block"),
        ("127.0.0.1-::2", "one address family to another"),
    ],
)
def test_a_pool_written_wrong_says_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_sources(text)


def test_the_scenario_key_names_itself_when_wrong_and_survives_the_results_copy() -> None:
    with pytest.raises(ScenarioError, match=r"target\.source.*runs backwards"):
        parse_scenario('name = "s"\n[target]\nsource = "127.0.0.9-127.0.0.1"\n')
    scenario = parse_scenario(
        'name = "s"\n[target]\nhost = "127.0.0.1"\nsource = ["127.0.0.2-127.0.0.3", "127.0.0.7"]\n'
    )
    assert scenario.target.source == ("127.0.0.2", "127.0.0.3", "127.0.0.7")
    assert parse_scenario(scenario_to_toml(scenario)) == scenario


def test_each_session_connects_from_the_next_address_of_the_pool() -> None:
    pool = tuple(f"127.0.0.{n}" for n in range(2, 22))  # 20 loopback addresses
    with aiosmtpd_serving(PeerHandler()) as (port, handler):
        scenario = scenario_for(port, sessions=200, rate=400, max_concurrency=20, source=pool)
        snapshot = trio.run(run_against, scenario)
    assert snapshot.counters.messages_accepted == 200
    # Session N from address N modulo 20: each address exactly ten times.
    assert handler.peers == Counter({address: 10 for address in pool})


def test_run_source_flag_overrides_the_scenario_and_is_recorded(tmp_path: Path) -> None:
    with aiosmtpd_serving(PeerHandler()) as (port, handler):
        done = smtpbench(
            "run", "--target", f"127.0.0.1:{port}", "--sessions", "6", "--rate", "100",
            "--source", "127.0.0.30-127.0.0.32", "--headless", "--out", str(tmp_path),
        )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    assert handler.peers == Counter({"127.0.0.30": 2, "127.0.0.31": 2, "127.0.0.32": 2})
    (folder,) = tmp_path.iterdir()
    written = (folder / "scenario.toml").read_text()
    assert 'source = "127.0.0.30, 127.0.0.31, 127.0.0.32"' in written
    assert "--source 127.0.0.30, 127.0.0.31, 127.0.0.32" in written  # in its description
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counters"]["messages_accepted"] == 6


def test_an_address_this_machine_lacks_stops_the_run_before_any_session(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: the run must not even try
    done = smtpbench(
        "run", "--target", f"127.0.0.1:{port}", "--sessions", "3",
        "--source", "127.0.0.2, 192.0.2.77", "--headless", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == exitcodes.TARGET_UNUSABLE, done.stdout + done.stderr
    assert "target.source: cannot connect from 192.0.2.77" in done.stdout + done.stderr
    assert "not an address of this machine" in done.stdout + done.stderr
    assert TRACEBACK not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_pool_of_the_other_family_is_refused_before_any_session(tmp_path: Path) -> None:
    done = smtpbench(
        "run", "--target", f"127.0.0.1:{free_port()}", "--sessions", "1",
        "--source", "::1", "--headless", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == exitcodes.TARGET_UNUSABLE, done.stdout + done.stderr
    assert "target.source: ::1 is not IPv4" in done.stdout + done.stderr


def test_a_bad_source_flag_is_a_usage_error() -> None:
    done = smtpbench("run", "--source", "127.0.0.9-127.0.0.1", "--sessions", "1", "--headless")
    assert done.returncode != exitcodes.OK
    assert "--source: '127.0.0.9-127.0.0.1' runs backwards" in done.stdout + done.stderr
    assert TRACEBACK not in done.stderr


def test_replay_connects_from_the_pool_too(tmp_path: Path) -> None:
    recordings = Path(__file__).resolve().parent.parent / "scenarios" / "recordings"
    recording = recordings / "default-aiosmtpd.jsonl"
    with aiosmtpd_serving(PeerHandler()) as (port, handler):
        done = smtpbench(
            "replay", str(recording), "--target", f"127.0.0.1:{port}", "--rate", "200",
            "--source", "127.0.0.40-127.0.0.41", "--headless", "--out", str(tmp_path),
        )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    # Every message came from the pool, and both of its addresses were used.
    assert set(handler.peers) == {"127.0.0.40", "127.0.0.41"}
