"""Sender and recipient lists read from files (``session.senders_file``,
``recipients_file``): the envelope a server receives comes from them, with the odds
their weights give, and a wrong line is named by file and line number."""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from smtpbench.scenario import MessageFactory, parse_scenario
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.writer import scenario_to_toml
from tests.runs import run_against
from tests.servers import aiosmtpd_serving


@dataclass
class Envelopes:
    seen: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.seen.append(
                (envelope.mail_from, tuple(envelope.rcpt_tos))  # type: ignore[attr-defined]
            )
        return "250 2.0.0 OK"


def lists(folder: Path) -> None:
    (folder / "senders.csv").write_text(
        "# who sends, and how often\nnews@shop.test,6\n\nalerts@shop.test,3\nceo@shop.test,1\n"
    )
    (folder / "recipients.txt").write_text("".join(f"user{n}@rcpt0.test\n" for n in range(10)))


def test_the_envelope_comes_from_the_lists(tmp_path: Path) -> None:
    lists(tmp_path)
    with aiosmtpd_serving(Envelopes()) as (port, handler):
        scenario = parse_scenario(
            'name = "l"\n[load]\nsessions = 40\nrate = 200\n[session]\nrecipients = 3\n'
            'senders_file = "senders.csv"\nrecipients_file = "recipients.txt"\n'
            f'[target]\nhost = "127.0.0.1"\nport = {port}\n',
            file=str(tmp_path / "s.toml"),
        )
        trio.run(run_against, scenario)
    assert len(handler.seen) == 40
    senders = {"news@shop.test", "alerts@shop.test", "ceo@shop.test"}
    recipients = {f"user{n}@rcpt0.test" for n in range(10)}
    for mail_from, rcpt_tos in handler.seen:
        assert mail_from in senders
        assert len(rcpt_tos) == 3 and set(rcpt_tos) <= recipients


def test_weights_hold_and_plain_lists_are_even(tmp_path: Path) -> None:
    lists(tmp_path)
    scenario = parse_scenario(
        'name = "l"\n[session]\nrecipients = 2\nsenders_file = "senders.csv"\n'
        'recipients_file = "recipients.txt"\n',
        file=str(tmp_path / "s.toml"),
    )
    factory = MessageFactory(scenario, seed=9)
    n = 6000
    plans = [factory.plan_session(i).messages[0] for i in range(n)]
    senders = Counter(plan.mail_from for plan in plans)
    for address, odds in (
        ("news@shop.test", 0.6),
        ("alerts@shop.test", 0.3),
        ("ceo@shop.test", 0.1),
    ):
        sigma = math.sqrt(n * odds * (1 - odds))
        assert abs(senders[address] - n * odds) < 4 * sigma, senders
    recipients = Counter(r for plan in plans for r in plan.recipients)
    for count in recipients.values():  # 12,000 draws over ten: 1,200 each
        assert abs(count - 1200) < 4 * math.sqrt(12000 * 0.1 * 0.9), recipients
    assert parse_scenario(scenario_to_toml(scenario)) == scenario


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("a@x.test\nnobody\n", "recipients.txt:2: 'nobody' is not an address"),
        ("a@x.test,heavy\n", "recipients.txt:1: the weight 'heavy' is not a number"),
        ("a@x.test,0\n", "recipients.txt:1: a weight is above 0"),
        ("a@x.test,1,2\n", "recipients.txt:1: expected an address, or address,weight"),
        ("# only a comment\n\n", "recipients.txt: no addresses in it"),
        ("ü@x.test\n", "recipients.txt:1: 'ü@x.test' is not printable ASCII"),
    ],
)
def test_a_wrong_line_is_named(tmp_path: Path, content: str, said: str) -> None:
    (tmp_path / "recipients.txt").write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(
            'name = "l"\n[session]\nrecipients_file = "recipients.txt"\n',
            file=str(tmp_path / "s.toml"),
        )
    assert caught.value.key == "session.recipients_file"
    assert said in str(caught.value)


def test_a_template_and_a_list_for_the_same_address_is_an_error(tmp_path: Path) -> None:
    lists(tmp_path)
    with pytest.raises(ScenarioError, match="mail_from and senders_file both give"):
        parse_scenario(
            'name = "l"\n[session]\nmail_from = "a@b.test"\nsenders_file = "senders.csv"\n',
            file=str(tmp_path / "s.toml"),
        )
    with pytest.raises(ScenarioError, match="no such file"):
        parse_scenario(
            'name = "l"\n[session]\nsenders_file = "missing.csv"\n', file=str(tmp_path / "s.toml")
        )
