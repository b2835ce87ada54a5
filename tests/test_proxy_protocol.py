"""The PROXY protocol header ([client] proxy): built and read back exactly, accepted by
aiosmtpd (an independent implementation) and by the sink, whose per-client limits
then count by the addresses the headers claim."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from aiosmtpd.controller import Controller

from smtpbench import exitcodes
from smtpbench.protocol.proxy_header import (
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
    proxy_header,
)
from smtpbench.scenario import parse_scenario
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.writer import scenario_to_toml
from tests.commands import TRACEBACK, smtpbench
from tests.runs import run_against
from tests.servers import LOOPBACK, free_port


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(
    ("source", "destination"), [("198.51.100.7", "127.0.0.1"), ("2001:db8::7", "::1")]
)
def test_a_header_reads_back_whole_and_not_before(
    version: int, source: str, destination: str
) -> None:
    header = proxy_header(version, source, 40000, destination, 25)
    if version == 1:  # the text the HAProxy specification gives, byte for byte
        family = "TCP4" if "." in source else "TCP6"
        assert header == f"PROXY {family} {source} {destination} 40000 25\r\n".encode()
    for cut in range(len(header)):  # any part of it: wait for more
        assert parse_proxy_header(header[:cut]) == (None, 0)
    expected = ProxyHeader(
        str(ipaddress.ip_address(source)), str(ipaddress.ip_address(destination)), 40000, 25
    )
    assert parse_proxy_header(header + b"EHLO x\r\n") == (expected, len(header))


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO client.example\r\n",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n",
        b"PROXY TCP4 2001:db8::7 127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 70000 25\r\n",
        b"PROXY " + b"x" * 120,
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # version 3
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\x00",  # a UNIX socket: not spoken here
    ],
)
def test_what_is_not_a_header_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)


def test_headers_naming_no_client() -> None:
    assert parse_proxy_header(b"PROXY UNKNOWN\r\nEHLO") == (ProxyHeader(None), 15)
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert parse_proxy_header(local) == (ProxyHeader(None), 16)


@dataclass
class ProxyPeers:
    claimed: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_PROXY(
        self, server: object, session: object, envelope: object, proxy_data: object
    ) -> bool:
        return True  # aiosmtpd asks its handler whether to take the header

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        proxy = session.proxy_data  # type: ignore[attr-defined]
        with self.lock:
            self.claimed[str(proxy.src_addr)] += 1
        return "250 2.0.0 OK"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aiosmtpd_behind_a_proxy_sees_the_claimed_clients(version: str) -> None:
    handler = ProxyPeers()
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port, proxy_protocol_timeout=5)
    controller.start()
    try:
        scenario = parse_scenario(
            f'name = "p"\n[load]\nsessions = 12\nrate = 200\n[client]\nproxy = "{version}"\n'
            f'addresses = "198.51.100.10-198.51.100.13"\n'
            f'[target]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        assert parse_scenario(scenario_to_toml(scenario)) == scenario
        snapshot = trio.run(run_against, scenario)
    finally:
        controller.stop()
    assert snapshot.counters.messages_accepted == 12
    assert handler.claimed == Counter({f"198.51.100.{n}": 3 for n in range(10, 14)})


LIMITED = """
name = "limited"
seed = 1
[load]
rate = 100
sessions = 20
[sink]
client_message_rate = "2/min"
"""


def _accepted(tmp_path: Path, text: str) -> dict[str, int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "s.toml").write_text(text)
    out = tmp_path / "out"
    done = smtpbench("run", str(tmp_path / "s.toml"), "--headless", "--out", str(out))
    assert TRACEBACK not in done.stderr, done.stderr
    (folder,) = out.iterdir()
    return json.loads((folder / "summary.json").read_text())["counters"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_sink_counts_its_limits_by_the_claimed_client(tmp_path: Path, version: str) -> None:
    proxied = LIMITED + 'proxy_protocol = "haproxy"\n'
    proxied += f'[client]\nproxy = "{version}"\naddresses = "198.51.100.0/28"\n'
    # Ten claimed clients in turn over twenty sessions: two messages each, all within
    # the limit of two a minute.
    counters = _accepted(tmp_path / "proxied", proxied)
    assert counters["messages_accepted"] == 20
    # The same load without headers is one client: two messages, the rest deferred.
    counters = _accepted(tmp_path / "plain", LIMITED)
    assert counters["messages_accepted"] == 2


def test_a_sink_that_expects_a_header_never_greets_a_connection_without_one(
    tmp_path: Path,
) -> None:
    # The client gives up on the banner after a second (the sink would wait its command
    # timeout for the header): each session fails there, and no message goes in.
    text = LIMITED.replace('"2/min"', '"100/min"') + 'proxy_protocol = "haproxy"\n'
    text = text.replace("sessions = 20", "sessions = 3") + '[timeouts]\nbanner = "1s"\n'
    counters = _accepted(tmp_path, text)
    assert counters["messages_accepted"] == 0 and counters["failed"] == 3
    assert counters["started"] == 3


def test_claimed_clients_of_the_other_family_stop_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "s.toml").write_text(
        'name = "f"\n[client]\nproxy = "v1"\naddresses = "2001:db8::1"\n'
    )
    done = smtpbench("run", str(tmp_path / "s.toml"), "--headless", "--out", str(tmp_path))
    assert done.returncode == exitcodes.TARGET_UNUSABLE, done.stdout + done.stderr
    assert "client.addresses: 2001:db8::1 is not of the target's family" in done.stderr


@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        ('proxy = "v3"\naddresses = "198.51.100.1"\n', "client.proxy", "'v1' or 'v2'"),
        ('proxy = "v1"\n', "client", "give addresses"),
        ('addresses = "198.51.100.1"\n', "client", 'set proxy = "v1"'),
        (
            'proxy = "v1"\naddresses = "198.51.100.9-198.51.100.1"\n',
            "client.addresses",
            "backwards",
        ),
    ],
)
def test_a_wrong_client_table_names_its_key(table: str, key: str, said: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(f'name = "c"\n[client]\n{table}')
    assert caught.value.key == key and said in str(caught.value), str(caught.value)
