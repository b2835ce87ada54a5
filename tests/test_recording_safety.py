"""Recordings and the recording proxy when things go wrong: open sessions written on
SIGTERM, SIGINT and SIGHUP; existing recordings kept unless --force; an endless reply
bounded; a client leaving before a silent server's banner; a line no parser can nest."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import socket
import time
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.commands.record import is_loopback
from smtpbench.recording import read_recording
from smtpbench.recording.reader import RecordingError, read_header
from smtpbench.servers.proxy import ProxyConfig, serve_proxy
from tests.commands import TRACEBACK, read_until, smtpbench, start_smtpbench
from tests.servers import LOOPBACK
from tests.test_pcap_import import TappedFlow, packets, write_capture

TIMEOUT = 20
EXAMPLE = Path(__file__).resolve().parent.parent / "scenarios" / "recordings" / "default-sink.jsonl"


def _port(line: str) -> int:
    return int(line.split(" listening on ")[1].split(",")[0].rsplit(":", 1)[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_record_writes_the_sessions_still_open_when_stopped(tmp_path: Path, signum: int) -> None:
    upstream = start_smtpbench("sink", "--listen", "127.0.0.1:0")
    out = tmp_path / "open.jsonl"
    record = None
    clients: list[socket.socket] = []
    try:
        upstream_port = _port(read_until(upstream, "listening on"))
        record = start_smtpbench(
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            f"127.0.0.1:{upstream_port}",
            "--out",
            str(out),
        )
        port = _port(read_until(record, "listening on"))
        for _ in range(5):
            client = socket.create_connection((LOOPBACK, port), timeout=5)
            assert client.recv(512).startswith(b"220")
            client.sendall(b"EHLO open.test\r\n")
            assert client.recv(4096).startswith(b"250")
            clients.append(client)
        record.send_signal(signum)
        said, errors = record.communicate(timeout=TIMEOUT)
        assert record.returncode == 0, errors
        assert TRACEBACK not in errors
        assert "5 connections, 5 sessions recorded" in said
    finally:
        for client in clients:
            client.close()
        for process in (record, upstream):
            if process is not None and process.poll() is None:
                process.terminate()
                process.communicate(timeout=TIMEOUT)
    sessions = read_recording(out).sessions
    assert len(sessions) == 5
    assert {s.closed_by for s in sessions} == {"proxy"}
    assert all(s.steps[1].line == b"EHLO open.test" for s in sessions)


def test_record_refuses_to_overwrite_a_recording_without_force(tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    out.write_bytes(EXAMPLE.read_bytes())
    done = smtpbench(
        "record", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--out", str(out)
    )
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert "exists; give --force to replace it" in done.stderr
    assert out.read_bytes() == EXAMPLE.read_bytes()
    record = start_smtpbench(
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--out",
        str(out),
        "--force",
    )
    try:
        read_until(record, "listening on")
    finally:
        record.terminate()
        record.communicate(timeout=TIMEOUT)
    assert read_header(out).source == "proxy" and out.read_bytes() != EXAMPLE.read_bytes()


def _capture(path: Path) -> None:
    flow = TappedFlow(("127.0.0.2", 40000), (LOOPBACK, 25), 0.0)
    flow.chunks = [
        (0.0, "s", b"220 capture.test ESMTP\r\n"),
        (0.1, "c", b"EHLO c.test\r\n"),
        (0.2, "s", b"250 capture.test\r\n"),
        (0.3, "c", b"QUIT\r\n"),
        (0.4, "s", b"221 bye\r\n"),
    ]
    write_capture(path, packets(flow))


def test_import_refuses_to_overwrite_a_recording_without_force(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcap"
    _capture(capture)
    out = tmp_path / "kept.jsonl"
    out.write_bytes(EXAMPLE.read_bytes())
    done = smtpbench("import", "pcap", str(capture), "--out", str(out))
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert "exists; give --force to replace it" in done.stderr
    assert out.read_bytes() == EXAMPLE.read_bytes()
    done = smtpbench("import", "pcap", str(capture), "--out", str(out), "--force")
    assert done.returncode == exitcodes.OK, done.stderr
    assert len(read_recording(out).sessions) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_line_of_nested_brackets_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    header = EXAMPLE.read_text().splitlines()[0]
    path.write_text(header + "\n" + "[" * 200_000 + "\n")
    with pytest.raises(RecordingError) as caught:
        read_recording(path)
    assert str(caught.value) == f"{path}:2: not valid JSON: nested too deeply"
    done = smtpbench("replay", str(path), "--dry-run")
    assert done.returncode == exitcodes.BAD_CONFIGURATION
    assert TRACEBACK not in done.stderr
    assert f"{path}:2: not valid JSON: nested too deeply" in done.stderr


async def _endless(stream: trio.SocketStream, line_ends: bool) -> None:
    await stream.send_all(b"220 endless.test ESMTP\r\n")
    await stream.receive_some(4096)  # EHLO
    piece = (b"250-" + b"x" * 1000 + b"\r\n") * 64 if line_ends else b"y" * 65536
    with trio.move_on_after(TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
        while True:
            await stream.send_all(piece)


@pytest.mark.parametrize("tls_mode", ["refuse", "terminate"])
@pytest.mark.parametrize("line_ends", [True, False])
async def test_an_endless_reply_ends_the_session_as_a_protocol_error(
    tmp_path: Path, line_ends: bool, tls_mode: str
) -> None:
    from tests.esmtp import make_certs

    certs = make_certs(tmp_path / "certs") if tls_mode == "terminate" else None
    out = tmp_path / "endless.jsonl"
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, lambda s: _endless(s, line_ends), 0)
        listeners = await nursery.start(functools.partial(serve, host=LOOPBACK))
        upstream = listeners[0].socket.getsockname()[1]
        config = ProxyConfig(
            LOOPBACK,
            upstream,
            out,
            tls_cert=certs.server_cert if certs else None,
            tls_key=certs.server_key if certs else None,
        )
        proxy = await nursery.start(serve_proxy, config)
        client = await trio.open_tcp_stream(*proxy.address)
        await client.send_all(b"EHLO c.test\r\n")
        received = 0
        with trio.fail_after(TIMEOUT):
            with contextlib.suppress(trio.BrokenResourceError):  # reset: replies unread
                while data := await client.receive_some(65536):
                    received += len(data)
            while proxy.stats.sessions_recorded < 1:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert proxy.stats.errors["protocol error"] == 1
    assert received < 2 * 1024 * 1024  # bounded: 256 lines of 4 KiB at most, and a bit
    [session] = read_recording(out).sessions
    assert session.closed_by == "proxy"


async def test_a_client_leaving_before_a_silent_servers_banner_is_recorded(
    tmp_path: Path,
) -> None:
    out = tmp_path / "silent.jsonl"
    async with trio.open_nursery() as nursery:
        silent = functools.partial(trio.serve_tcp, lambda s: trio.sleep_forever(), 0, host=LOOPBACK)
        listeners = await nursery.start(silent)
        upstream = listeners[0].socket.getsockname()[1]
        proxy = await nursery.start(serve_proxy, ProxyConfig(LOOPBACK, upstream, out))
        for said in (b"", b"EHLO c.test\r\n", b"EHLO c.test\r\nSTARTTLS\r\n", b"STARTTLS\r\n"):
            client = await trio.open_tcp_stream(*proxy.address)
            if said:
                await client.send_all(said)
            await trio.sleep(0.1)
            await client.aclose()
        started = time.monotonic()
        with trio.fail_after(TIMEOUT):
            while proxy.stats.sessions_recorded < 4:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert time.monotonic() - started < TIMEOUT
    sessions = read_recording(out).sessions
    assert [s.closed_by for s in sessions] == ["client"] * 4
    assert json.loads(out.read_text().splitlines()[0])["source"] == "proxy"


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_record_on_loopback_gives_no_warning(tmp_path: Path, listen: str) -> None:
    record = start_smtpbench(
        "record", "--listen", listen, "--upstream", "127.0.0.1:9", "--out", str(tmp_path / "r")
    )
    try:
        read_until(record, "listening on")
    finally:
        record.terminate()
        _, errors = record.communicate(timeout=TIMEOUT)
    assert errors == ""


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.7", False),
        ("mx.test.lan", False),
    ],
)
def test_what_counts_as_loopback_for_the_warning(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_record_names_out_when_the_recording_cannot_be_created() -> None:
    done = smtpbench(
        "record", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--out",
        "/proc/recording.jsonl",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("smtpbench record: error: --out: cannot write /proc/")
    assert TRACEBACK not in done.stderr


async def test_a_client_leaving_while_the_server_does_not_answer_the_connect(
    tmp_path: Path,
) -> None:
    """An upstream whose accept queue is full drops SYNs: the proxy's connect hangs. The
    client that leaves meanwhile is noticed and recorded, not held for the 30 s timeout."""
    full = socket.socket()
    full.bind((LOOPBACK, 0))
    full.listen(0)
    upstream = full.getsockname()[1]
    queued = []
    for _ in range(3):  # fill the accept queue; later SYNs go unanswered
        waiting = socket.socket()
        waiting.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            waiting.connect((LOOPBACK, upstream))
        queued.append(waiting)
    out = tmp_path / "unanswered.jsonl"
    try:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(serve_proxy, ProxyConfig(LOOPBACK, upstream, out))
            client = await trio.open_tcp_stream(*proxy.address)
            await trio.sleep(0.3)
            await client.aclose()
            with trio.fail_after(10):
                while proxy.stats.sessions_recorded < 1:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    finally:
        for waiting in queued:
            waiting.close()
        full.close()
    [session] = read_recording(out).sessions
    assert session.closed_by == "client"
    assert proxy.stats.upstream_failures == 0
