"""The sink's own limits: idle and command timeouts, a connection limit answered 421,
accept() out of descriptors without a flood of tracebacks, and addresses with NUL."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time

import pytest
import trio

from smtpbench.servers.sink import SinkConfig
from tests.commands import ENV, ROOT, TRACEBACK, read_until
from tests.test_sink import Raw, start_sink

TIMEOUT = 10


async def test_an_address_with_nul_is_refused(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    client = await Raw.connect(sink)
    await client.send(b"EHLO client.test\r\n")
    assert (await client.reply())[0] == 250
    await client.send(b"MAIL FROM:<a\x00@b.test>\r\n")
    code, lines = await client.reply()
    assert code == 501, lines
    await client.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c\x01@d.test>\r\n")
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 501


async def test_an_idle_client_gets_421_and_is_closed(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, idle_timeout=0.3)
    client = await Raw.connect(sink)
    with trio.fail_after(TIMEOUT):
        code, lines = await client.reply()
        assert code == 421 and "timeout" in lines[0]
        assert await client.stream.receive_some() == b""
    assert sink.stats.timeouts == 1


async def test_a_command_that_never_ends_gets_421(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, idle_timeout=60, command_timeout=0.3)
    client = await Raw.connect(sink)
    await client.send(b"EHLO client.test\r\n")
    assert (await client.reply())[0] == 250
    await client.send(b"MAIL FROM:<a@b")  # and no more
    with trio.fail_after(TIMEOUT):
        assert (await client.reply())[0] == 421
    assert sink.stats.timeouts == 1


async def test_message_content_that_stops_coming_gets_421(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, idle_timeout=60, command_timeout=0.3)
    client = await Raw.connect(sink)
    await client.send(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    for expected in (250, 250, 250, 354):
        assert (await client.reply())[0] == expected
    await client.send(b"Subject: x\r\n\r\nhalf a message\r\n")
    with trio.fail_after(TIMEOUT):
        assert (await client.reply())[0] == 421
    assert sink.stats.messages_accepted == 0


async def test_connections_over_the_limit_get_421(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, max_connections=2)
    first = await Raw.connect(sink)
    second = await Raw.connect(sink)
    third = await Raw.connect(sink, banner=False)
    with trio.fail_after(TIMEOUT):
        code, lines = await third.reply()
    assert code == 421 and "Too many connections" in lines[0]
    assert sink.stats.refused == 1
    await first.send(b"QUIT\r\n")
    assert (await first.reply())[0] == 221
    await first.stream.aclose()
    with trio.fail_after(TIMEOUT):
        while sink.stats.active > 1:
            await trio.sleep(0.01)
    fourth = await Raw.connect(sink)  # a place came free
    await fourth.send(b"NOOP\r\n")
    assert (await fourth.reply())[0] == 250
    await second.send(b"NOOP\r\n")
    assert (await second.reply())[0] == 250


def test_config_refuses_bad_limits() -> None:
    with pytest.raises(ValueError, match="timeouts"):
        SinkConfig(idle_timeout=0)
    with pytest.raises(ValueError, match="at least one connection"):
        SinkConfig(max_connections=0)


def _limit_descriptors(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def _banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(512)


@pytest.mark.parametrize("max_connections", [None, 500])
def test_out_of_descriptors_the_sink_says_so_once_and_recovers(
    max_connections: int | None,
) -> None:
    """A sink process with 64 descriptors and 100 idle clients: without a limit it answers
    421 past what its descriptors allow; with a limit above them accept() fails with
    EMFILE, said once, no traceback; when the clients leave, it serves again."""
    flags = ["--max-connections", str(max_connections)] if max_connections else []
    sink = subprocess.Popen(
        [sys.executable, "-m", "smtpbench", "sink", "--listen", "127.0.0.1:0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
        preexec_fn=lambda: _limit_descriptors(64),
    )
    clients: list[socket.socket] = []
    try:
        line = read_until(sink, r"listening on")
        port = int(line.strip().rsplit(":", 1)[1])
        for _ in range(100):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)  # accept() fails a few times, backing off
        if max_connections is None:  # (with the limit, clients not accepted hear nothing)
            answered = []
            for client in clients:
                client.settimeout(0.2)
                with contextlib.suppress(OSError):
                    answered.append(client.recv(512)[:3])
            assert b"421" in answered and answered.count(b"220") >= 16
        for client in clients:
            client.close()
        clients.clear()
        deadline = time.monotonic() + TIMEOUT
        banner = b""
        while time.monotonic() < deadline and not banner.startswith(b"220"):
            with contextlib.suppress(OSError):
                banner = _banner(port)
            time.sleep(0.1)
        assert banner.startswith(b"220")
    finally:
        for client in clients:
            client.close()
        sink.terminate()
        out, errors = sink.communicate(timeout=TIMEOUT)
    assert TRACEBACK not in errors
    assert errors.count("accept failed") <= 1
    if max_connections is not None:
        assert "accept failed: EMFILE" in errors and "accepts failed (EMFILE)" in out
    else:
        assert "refused (too many connections)" in out
