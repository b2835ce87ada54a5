"""The session machine as one of many clients, with no socket (the harness of
``test_session_machine.py``): the PROXY protocol header that says which client a session
is, and the figures each session adds to its client's row."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import pytest

from smtpbench.engine.session import SessionSettings
from smtpbench.metrics.client_groups import ClientGroups, ClientRow
from smtpbench.scenario import parse_scenario
from tests.esmtp import Certs, make_certs
from tests.test_session_machine import ADDRESS, Clock, Outcome, Wire, answers, converse
from tests.test_session_machine_outcomes import server_context, tls_scenario

POOL = '[client]\nproxy = "v1"\naddresses = ["198.51.100.1", "198.51.100.2"]\n'
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # the PROXY protocol's version 2 signature


class Proxied(Wire):
    """A wire that takes the PROXY header off the front (a proxy's listener would)."""

    headers: ClassVar[list[bytes]] = []

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.first = True

    def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
        if self.first:
            self.first = False
            if data.startswith((b"PROXY ", V2_SIGNATURE)):
                Proxied.headers.append(data)
                return True
        return super().write(data, mark, began)


def header_of(tmp_path: Path, scenario: str, number: int, **options: object) -> bytes:
    Proxied.headers = []
    converse(tmp_path, scenario, wire=Proxied, number=number, **options)  # type: ignore[arg-type]
    (header,) = Proxied.headers
    return header


def test_a_proxy_v1_header_says_which_client_the_session_is(tmp_path: Path) -> None:
    third = header_of(tmp_path, POOL, 3).split(b" ")
    fourth = header_of(tmp_path, POOL, 4).split(b" ")
    # "PROXY TCP4 <client> <server> <client port> <server port>\r\n"
    assert third[:4] == [b"PROXY", b"TCP4", b"198.51.100.2", b"127.0.0.1"]
    assert third[5] == b"25\r\n" and fourth[2] == b"198.51.100.1"
    ports = int(third[4]), int(fourth[4])
    assert all(1024 <= port <= 65535 for port in ports) and ports[1] == ports[0] + 1


def test_a_proxy_v2_header_is_binary(tmp_path: Path) -> None:
    scenario = POOL.replace('"v1"', '"v2"')
    header = header_of(tmp_path, scenario, 0)
    assert header.startswith(V2_SIGNATURE)
    assert header[12] == 0x21  # version 2, PROXY command
    assert header[16:20] == bytes([198, 51, 100, 1]) and header[20:24] == bytes([127, 0, 0, 1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_the_header_goes_before_implicit_tls(tmp_path: Path, certs: Certs) -> None:
    header = header_of(
        tmp_path, POOL + tls_scenario(certs, "implicit"), 0, tls=server_context(certs)
    )
    assert header.startswith(b"PROXY TCP4 198.51.100.1 ")


def test_the_client_settings_come_from_the_scenario() -> None:
    scenario = parse_scenario('name = "x"\n' + POOL)
    settings = SessionSettings.from_scenario(scenario, ADDRESS)
    assert settings.proxy_version == 1  # version 1 of the PROXY protocol
    assert settings.claimed == ("198.51.100.1", "198.51.100.2")
    assert settings.client == scenario.client


# -- figures per client ---------------------------------------------------------------


def row_of(
    tmp_path: Path, scenario: str, answer=None, **options: object
) -> tuple[ClientRow, Outcome]:
    clients = ClientGroups()
    outcome = converse(
        tmp_path,
        scenario,
        answer,
        adjust=lambda s: dataclasses.replace(s, clients=clients),
        **options,  # type: ignore[arg-type]
    )
    (row,) = clients.rows()
    return row, outcome


@pytest.mark.parametrize(
    ("scenario", "client"),
    [
        ('[client]\nproxy = "v1"\naddresses = ["198.51.100.7"]\n', "198.51.100.7"),
        ('[target]\nsource = ["127.0.0.9"]\n', "127.0.0.9"),
        ("", "(this machine)"),
    ],
    ids=["claimed", "source", "neither"],
)
def test_a_session_counts_for_its_client(tmp_path: Path, scenario: str, client: str) -> None:
    row, _ = row_of(tmp_path, scenario + "[session]\nrecipients = 2\n", wire=Proxied)
    assert row.client == client and (row.sessions, row.failed) == (1, 0)
    assert (row.accepted, row.refused) == (1, 0)
    # banner, EHLO, MAIL, 2 RCPT, end of data and QUIT are 2xx; DATA's 354 is 3xx.
    assert row.replies == (7, 1, 0, 0)
    assert sum(count for _, count in row.message) == 1
    assert sum(count for _, count in row.data_end) == 1
    # The message took 8 THINKs from the intended start, its end of data one: apart.
    assert row.message != row.data_end


def test_a_failed_session_and_a_refused_message_count_for_the_client(tmp_path: Path) -> None:
    row, _ = row_of(
        tmp_path,
        "[session]\nmessages = 2\n",
        answers(RCPT=[(450, "later", "4.2.0"), (250, "ok", None)], DATA_END=(554, "no", "5.7.1")),
    )
    assert (row.sessions, row.failed) == (1, 1)
    assert (row.accepted, row.refused) == (0, 2)
    assert row.replies[2:] == (1, 1)  # the 450 and the 554
    assert sum(count for _, count in row.message) == 1  # the message that got an answer
