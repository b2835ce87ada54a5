"""Several servers in one run (``target.hosts``): sessions go to each as ``choose``
says, checked on the servers' side (two aiosmtpd servers on loopback)."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from smtpbench.engine.targets import Targets
from smtpbench.engine.transport import Address
from smtpbench.scenario import parse_scenario
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.writer import scenario_to_toml
from tests.runs import run_against
from tests.servers import aiosmtpd_serving


@dataclass
class Recipients:
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.seen.extend(envelope.rcpt_tos)  # type: ignore[attr-defined]
        return "250 2.0.0 OK"


def run_to_two(target_table: str, session_table: str, sessions: int, base: Path) -> list[list[str]]:
    """Runs ``sessions`` one-message sessions against two servers; what each received."""
    with ExitStack() as stack:
        one = stack.enter_context(aiosmtpd_serving(Recipients()))
        two = stack.enter_context(aiosmtpd_serving(Recipients()))
        hosts = (
            f'hosts = [{{ host = "127.0.0.1", port = {one[0]}, weight = 3 }}, '
            f'{{ host = "127.0.0.1", port = {two[0]} }}]\n'
        )
        scenario = parse_scenario(
            f'name = "t"\n[load]\nsessions = {sessions}\nrate = 500\n'
            f"[session]\n{session_table}[target]\n{hosts}{target_table}",
            file=str(base / "s.toml"),
        )
        assert parse_scenario(scenario_to_toml(scenario)) == scenario
        snapshot = trio.run(run_against, scenario)
        assert snapshot.counters.messages_accepted == sessions
        return [one[1].seen, two[1].seen]


def test_round_robin_alternates(tmp_path: Path) -> None:
    first, second = run_to_two("", "", 20, tmp_path)
    assert len(first) == len(second) == 10


def test_weights_share_the_sessions(tmp_path: Path) -> None:
    first, second = run_to_two('choose = "weighted"\n', "", 200, tmp_path)
    # 3 to 1 along the golden-ratio sequence: within a couple of sessions of 150 and 50.
    assert abs(len(first) - 150) <= 2 and len(first) + len(second) == 200


def test_a_recipient_domain_always_goes_to_the_same_server(tmp_path: Path) -> None:
    (tmp_path / "rcpt.txt").write_text("".join(f"user@domain{n}.test\n" for n in range(12)))
    first, second = run_to_two(
        'choose = "recipient-domain"\n', 'recipients_file = "rcpt.txt"\n', 120, tmp_path
    )
    domains = [Counter(r.split("@")[1] for r in got) for got in (first, second)]
    assert domains[0] and domains[1]  # both servers used
    assert not set(domains[0]) & set(domains[1])  # no domain on both


def test_weighted_picks_hold_at_every_length() -> None:
    address = Address("127.0.0.1", 25, 2, ("127.0.0.1", 25))
    # Weights 1, 2 and 7: shares of 10%, 20% and 70%.
    targets = Targets((address, address, address), (1.0, 3.0, 10.0), "weighted")
    for length in (10, 100, 1000, 10000):
        picked = Counter(targets.pick(n) for n in range(length))
        for index, share in enumerate((0.1, 0.2, 0.7)):
            assert abs(picked[index] - length * share) <= 2, (length, picked)


@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        ('hosts = [{ host = "a" }]\n', "target.hosts", "two servers or more"),
        ('host = "x"\nhosts = [{ host = "a" }, { host = "b" }]\n', "target.hosts", "choose one"),
        ('choose = "weighted"\n', "target.choose", "give hosts"),
        (
            'hosts = [{ host = "a", weight = -1 }, { host = "b" }]\n',
            "target.hosts[0].weight",
            "above 0",
        ),
        (
            'hosts = [{ host = "a" }, { host = "b" }]\nchoose = "random"\n',
            "target.choose",
            "round-robin",
        ),
    ],
)
def test_a_wrong_hosts_table_names_its_key(table: str, key: str, said: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(f'name = "t"\n[target]\n{table}')
    assert caught.value.key == key and said in str(caught.value), str(caught.value)
