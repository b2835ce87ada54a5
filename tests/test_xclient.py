"""Postfix's XCLIENT ([client] xclient): the client state machine's rules, and a run
against the private Postfix that trusts this client, whose log then names the
clients the sessions claimed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.client import ClientConnection, State
from smtpbench.protocol.errors import LocalProtocolError
from smtpbench.protocol.steps import Step
from smtpbench.scenario import parse_scenario
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.writer import scenario_to_toml
from tests.esmtp import Certs, make_certs
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.runs import run_against

EHLO = b"250-mx.test\r\n250-PIPELINING\r\n250 XCLIENT NAME ADDR PROTO HELO\r\n"


def greeted(ehlo: bytes = EHLO) -> ClientConnection:
    conn = ClientConnection()
    conn.received(b"220 mx.test ESMTP\r\n")
    conn.ehlo("client.test")
    conn.received(ehlo)
    return conn


def test_xclient_starts_the_session_over_on_220() -> None:
    conn = greeted()
    line = conn.xclient({"ADDR": "198.51.100.7", "NAME": "c7.test", "HELO": "c 7"})
    assert line == b"XCLIENT ADDR=198.51.100.7 NAME=c7.test HELO=c+207\r\n"
    conn.received(b"220 mx.test ESMTP\r\n")
    # As after STARTTLS: greet again, with the new greeting's extensions.
    assert conn.state is State.GREETED and not conn.capabilities.has("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.mail("a@b.test")


def test_a_refused_xclient_leaves_the_session_where_it_was() -> None:
    conn = greeted()
    conn.xclient({"ADDR": "198.51.100.7"})
    conn.received(b"550 5.7.0 Error: insufficient XCLIENT permissions\r\n")
    assert conn.state is State.READY and conn.capabilities.has("PIPELINING")


def test_xclient_is_sent_only_to_a_server_that_offers_it() -> None:
    conn = greeted(b"250-mx.test\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError, match="did not advertise"):
        conn.xclient({"ADDR": "198.51.100.7"})


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('xclient = true\nproxy = "v1"\naddresses = "198.51.100.1"\n', "PROXY header or XCLIENT"),
        ("xclient = true\n", "give addresses"),
        ('name = "c{session}.test"\naddresses = "198.51.100.1"\nproxy = "v1"\n', "xclient = true"),
        ('xclient = true\naddresses = "198.51.100.1"\nname = "c{counter}.test"\n', "{session}"),
    ],
)
def test_a_wrong_client_table_says_what(table: str, said: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(f'name = "x"\n[client]\n{table}')


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("xclient-certs"))


@pytest.fixture(scope="module")
def trusting(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    settings = {"smtpd_authorized_xclient_hosts": "127.0.0.1"}
    with private_postfix(certs, {"loadtest": "secret"}, settings=settings) as instance:
        yield instance


CLIENT = """
name = "xclient"
[load]
rate = 50
sessions = 6
[session]
rcpt_to = "user{counter}@rcpt0.test"
helo_name = "helo{session}.smtpbench.test"
[client]
xclient = true
addresses = "198.51.100.1-198.51.100.3"
name = "client{session}.smtpbench.test"
"""


@pytest.mark.postfix
def test_postfix_logs_the_clients_the_sessions_claimed(trusting: Postfix, tmp_path: Path) -> None:
    since = trusting.log_size()
    scenario = parse_scenario(CLIENT + f'[target]\nhost = "127.0.0.1"\nport = {trusting.port}\n')
    assert parse_scenario(scenario_to_toml(scenario)) == scenario
    snapshot = trio.run(run_against, scenario)
    assert snapshot.counters.messages_accepted == 6 and snapshot.counters.failed == 0
    assert snapshot.replies[Step.XCLIENT][220] == 6
    trusting.wait_for_disconnects(6, since)
    logged = "\n".join(trusting.log_lines(since))
    for session in range(6):
        client = f"client{session}.smtpbench.test[198.51.100.{session % 3 + 1}]"
        assert f"client={client}" in logged, (client, logged[-2000:])


@pytest.mark.postfix
def test_a_postfix_that_does_not_trust_this_client_does_not_offer_xclient(certs: Certs) -> None:
    skip_without_sasl()
    with private_postfix(certs, {"loadtest": "secret"}) as postfix:
        scenario = parse_scenario(
            CLIENT.replace("sessions = 6", "sessions = 2")
            + f'[target]\nhost = "127.0.0.1"\nport = {postfix.port}\n'
        )
        snapshot = trio.run(run_against, scenario)
    assert snapshot.counters.messages_accepted == 0
    assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 2}
    assert "client.xclient" in snapshot.failures[-1].detail
