"""The recording proxy: transparent bytes, STARTTLS refused or terminated, and clients and
servers that misbehave, all against real servers on loopback."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import trio

from smtpbench.faults import parse_fault_table
from smtpbench.recording import read_recording
from smtpbench.scenario.model import Tls
from smtpbench.servers.proxy import UNREACHABLE_REPLY
from tests.esmtp import esmtp_scenario, make_certs
from tests.recording_servers import proxy_in_front, run_scenario, settle, sink
from tests.servers import LOOPBACK, free_port

SCRIPT = [
    b"EHLO client.test\r\n",
    b"MAIL FROM:<a@b.test>\r\n",
    b"RCPT TO:<c@d.test>\r\nRCPT TO:<>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\n..dot\r\n.\r\n",
    b"VRFY someone\r\nNOOP\r\n",
    b"BOGUS\r\n",
    b"QUIT\r\n",
]


async def talk(port: int, script: list[bytes]) -> list[bytes]:
    """Sends each piece after the replies to the one before; what came back, per piece."""
    stream = await trio.open_tcp_stream(LOOPBACK, port)
    got: list[bytes] = []
    async with stream:
        with trio.fail_after(10):
            got.append(await _replies(stream, 1))
            for piece in script:
                await stream.send_all(piece)
                expected = piece.count(b"\n") if not piece.startswith(b"Subject") else 1
                got.append(await _replies(stream, expected))
    return got


async def _replies(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    while _complete(data) < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


def _complete(data: bytes) -> int:
    return sum(1 for line in data.split(b"\r\n") if len(line) >= 4 and line[3:4] == b" ")


async def test_the_client_sees_exactly_what_the_server_says(tmp_path: Path) -> None:
    async with sink(auth=False) as server:
        direct = await talk(server.address[1], SCRIPT)
        async with proxy_in_front(server.address[1], tmp_path / "r.jsonl") as proxy:
            relayed = await talk(proxy.address[1], SCRIPT)
            await settle(proxy, 1)
    strip = [reply.replace(b"0000000001", b"").replace(b"0000000002", b"") for reply in direct]
    assert [r.replace(b"0000000002", b"") for r in relayed] == strip
    session = read_recording(tmp_path / "r.jsonl").sessions[0]
    assert [step.verb or step.kind for step in session.steps] == [
        "banner", "EHLO", "MAIL", "RCPT", "RCPT", "DATA", "data", "VRFY", "NOOP", "BOGUS", "QUIT",
    ]  # fmt: skip
    assert session.steps[4].pipelined and session.steps[8].pipelined
    assert [r.code for s in session.steps for r in s.replies] == [
        220, 250, 250, 250, 501, 354, 250, 252, 250, 500, 221,
    ]  # fmt: skip
    content = session.steps[6].content
    assert content is not None and content.data == b"Subject: x\r\n\r\n.dot\r\n"


async def test_starttls_refused_by_default(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    out = tmp_path / "r.jsonl"
    tls = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
    async with sink(**tls) as server, proxy_in_front(server.address[1], out) as proxy:
        got = await talk(
            proxy.address[1],
            [b"EHLO c\r\n", b"STARTTLS\r\n", b"MAIL FROM:<a@b>\r\n", b"QUIT\r\n"],
        )
        await settle(proxy, 1)
    assert b"STARTTLS" not in got[1] and got[1].startswith(b"250-")
    assert got[1].rstrip().split(b"\r\n")[-1][3:4] == b" "  # still a well-formed reply
    assert got[2].startswith(b"454 4.7.0")
    assert got[3].startswith(b"250")  # the session goes on in clear text
    steps = read_recording(out).sessions[0].steps
    assert steps[2].line == b"STARTTLS" and steps[2].reply is not None
    assert steps[2].reply.code == 454


async def test_starttls_terminated_with_the_given_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    out = tmp_path / "r.jsonl"
    async with sink(tls_cert=certs.server_cert, tls_key=certs.server_key) as server:
        options = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
        async with proxy_in_front(server.address[1], out, **options) as proxy:
            scenario = esmtp_scenario(
                proxy.address[1],
                tls=Tls(mode="starttls", verify=True, ca_file=certs.ca_file, sni="localhost"),
                load={"rate": 20, "duration": 0.5},
            )
            snapshot = await run_scenario(scenario)
            await settle(proxy, snapshot.counters.started)
    assert snapshot.counters.failed == 0 and snapshot.counters.messages_accepted == 10
    assert server.stats.tls_sessions == 10  # the proxy spoke TLS to the server too
    assert proxy.stats.tls_sessions == 10
    for session in read_recording(out).sessions:
        kinds = [step.verb or step.kind for step in session.steps]
        assert kinds[:5] == ["banner", "EHLO", "STARTTLS", "tls", "EHLO"]
        assert "data" in kinds and kinds[-1] == "QUIT"


async def test_a_server_that_cannot_be_reached(tmp_path: Path) -> None:
    async with proxy_in_front(free_port(), tmp_path / "r.jsonl") as proxy:
        stream = await trio.open_tcp_stream(LOOPBACK, proxy.address[1])
        with trio.fail_after(10):
            reply = await _replies(stream, 1)
        await stream.aclose()
        assert reply == UNREACHABLE_REPLY
        assert proxy.stats.upstream_failures == 1


async def test_clients_that_vanish_and_servers_that_talk_garbage(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    faults = parse_fault_table({"garbage": {"RCPT": "100%"}})
    async with sink(faults=faults) as server, proxy_in_front(server.address[1], out) as proxy:
        # A client that resets in the middle of its message.
        stream = await trio.open_tcp_stream(LOOPBACK, proxy.address[1])
        with trio.fail_after(10):
            await _replies(stream, 1)
            await stream.send_all(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
            await _replies(stream, 2)
        linger = struct.pack("ii", 1, 0)  # close with a reset
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        await stream.aclose()
        # Sessions after it go through; the garbage RCPT reply is recorded as such.
        snapshot = await run_scenario(
            esmtp_scenario(proxy.address[1], load={"sessions": 3, "rate": 20})
        )
        await settle(proxy, 4)
    assert snapshot.counters.started == 3
    sessions = read_recording(out).sessions
    assert len(sessions) == 4
    first = min(sessions, key=lambda s: s.start)
    assert [step.verb for step in first.steps[1:]] == ["HELO", "MAIL"]
    for session in sessions:
        rcpt = [step for step in session.steps if step.verb == "RCPT"]
        for step in rcpt:
            assert step.reply is not None and step.reply.code is None  # not SMTP


async def test_no_content_keeps_sizes_and_hashes_only(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    async with (
        sink() as server,
        proxy_in_front(server.address[1], out, keep_content=False) as proxy,
    ):
        snapshot = await run_scenario(
            esmtp_scenario(proxy.address[1], load={"sessions": 2, "rate": 20})
        )
        await settle(proxy, 2)
    recording = read_recording(out)
    assert recording.header.content == "hash"
    for session in recording.sessions:
        content = next(step.content for step in session.steps if step.kind == "data")
        assert content is not None and content.data is None and content.size == 2048
    assert snapshot.counters.messages_accepted == 2
