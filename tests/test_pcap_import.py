"""Captures to recordings: captures built with dpkt from traffic that went through a tap in
front of the recording proxy (so the proxy recorded the same traffic), loopback captures
made by tcpdump, and captures with holes, reordering, duplicates and damage."""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import pytest
import trio

from smtpbench.cli import main
from smtpbench.recording import read_recording
from smtpbench.recording.pcap import CaptureError, import_pcap
from tests.recording_servers import proxy_in_front, run_scenario, settle, sink, varied
from tests.servers import LOOPBACK

Address = tuple[str, int]
Chunk = tuple[float, str, bytes]  # time, "c" (client to server) or "s", bytes


@dataclass
class TappedFlow:
    client: Address  # as the server sees it
    server: Address
    start: float
    chunks: list[Chunk] = field(default_factory=list)


@asynccontextmanager
async def tap(target: int) -> AsyncIterator[tuple[int, list[TappedFlow]]]:
    """A relay in front of ``target`` noting each read of each connection, in order."""
    flows: list[TappedFlow] = []

    async def relay(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream(LOOPBACK, target)
        local = server.socket.getsockname()
        flow = TappedFlow((local[0], local[1]), (LOOPBACK, target), trio.current_time())
        flows.append(flow)

        async def pump(source: trio.SocketStream, sink_: trio.SocketStream, side: str) -> None:
            try:
                while data := await source.receive_some(65536):
                    flow.chunks.append((trio.current_time(), side, data))
                    await sink_.send_all(data)
                await sink_.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with server, client, trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, server, "c")
            nursery.start_soon(pump, server, client, "s")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, relay, 0, host=LOOPBACK))
        try:
            yield listeners[0].socket.getsockname()[1], flows
        finally:
            nursery.cancel_scope.cancel()


# -- packets --------------------------------------------------------------------------------


def _ip(src: Address, dst: Address, tcp: dpkt.tcp.TCP) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(
        src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=dpkt.ip.IP_PROTO_TCP, data=tcp
    )
    ip.len = ip.__hdr_len__ + len(bytes(tcp))
    return ip


def _tcp(src: Address, dst: Address, seq: int, ack: int, flags: int, data: bytes = b""):
    return dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags, data=data)


def packets(flow: TappedFlow, mss: int = 1000, epoch: float = 1_700_000_000.0):
    """(time, IP packet) of a whole connection: handshake, data in segments, FINs."""
    c, s = flow.client, flow.server
    seq = {"c": random.randrange(1 << 32), "s": random.randrange(1 << 32)}
    t0 = epoch + flow.start
    ack_flag = dpkt.tcp.TH_ACK
    out = [
        (t0, _ip(c, s, _tcp(c, s, seq["c"], 0, dpkt.tcp.TH_SYN))),
        (t0, _ip(s, c, _tcp(s, c, seq["s"], seq["c"] + 1, dpkt.tcp.TH_SYN | ack_flag))),
    ]
    seq = {"c": seq["c"] + 1, "s": seq["s"] + 1}
    t = t0
    for at, side, data in flow.chunks:
        t = epoch + at
        src, dst = (c, s) if side == "c" else (s, c)
        other = "s" if side == "c" else "c"
        for begin in range(0, len(data), mss):
            piece = data[begin : begin + mss]
            flags = ack_flag | dpkt.tcp.TH_PUSH
            tcp = _tcp(src, dst, seq[side] % (1 << 32), seq[other] % (1 << 32), flags, piece)
            out.append((t, _ip(src, dst, tcp)))
            seq[side] += len(piece)
    fin = dpkt.tcp.TH_FIN | ack_flag
    out.append((t, _ip(s, c, _tcp(s, c, seq["s"] % (1 << 32), seq["c"] % (1 << 32), fin))))
    out.append((t, _ip(c, s, _tcp(c, s, seq["c"] % (1 << 32), (seq["s"] + 1) % (1 << 32), fin))))
    return out


def write_capture(path: Path, frames: list[tuple[float, dpkt.ip.IP]], kind: str = "pcap") -> None:
    with path.open("wb") as stream:
        if kind == "pcapng":
            writer = dpkt.pcapng.Writer(stream, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        elif kind == "raw":
            writer = dpkt.pcap.Writer(stream, snaplen=65535, linktype=101)
        else:
            writer = dpkt.pcap.Writer(stream, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, ip in frames:
            if kind == "raw":
                frame = bytes(ip)
            else:
                frame = bytes(
                    dpkt.ethernet.Ethernet(
                        src=b"\x00" * 6, dst=b"\x00" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip
                    )
                )
            writer.writepkt(frame, ts=ts)


async def recorded_traffic(tmp_path: Path) -> tuple[Path, list[TappedFlow]]:
    """A varied scenario through the tap and the proxy to the sink: the proxy's recording
    and what the tap saw."""
    out = tmp_path / "proxy.jsonl"
    async with (
        sink() as server,
        proxy_in_front(server.address[1], out) as proxy,
        tap(proxy.address[1]) as (tap_port, flows),
    ):
        snapshot = await run_scenario(varied(tap_port))
        await settle(proxy, snapshot.counters.started)
    assert snapshot.counters.failed == 0
    return out, flows


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "raw"])
async def test_a_built_capture_imports_to_the_proxy_recording(tmp_path: Path, kind: str) -> None:
    proxied, flows = await recorded_traffic(tmp_path)
    frames = sorted((f for flow in flows for f in packets(flow)), key=lambda f: f[0])
    capture = tmp_path / f"c.{kind}"
    write_capture(capture, frames, kind)
    imported = import_pcap(capture)
    assert imported.problems == ()
    assert imported.recording.without_timing() == read_recording(proxied).without_timing()


async def test_reordered_and_repeated_segments(tmp_path: Path) -> None:
    proxied, flows = await recorded_traffic(tmp_path)
    rng = random.Random(5)
    frames = []
    for flow in flows:
        mine = packets(flow, mss=300)
        shuffled = mine[:3]
        for frame in mine[3:]:
            shuffled.append(frame)
            if rng.random() < 0.2:
                shuffled.append(frame)  # a retransmission
            last, before = shuffled[-1][1], shuffled[-2][1]
            same_way = (last.src, last.data.sport) == (before.src, before.data.sport)
            if len(shuffled) > 4 and same_way and rng.random() < 0.5:
                shuffled[-1], shuffled[-2] = shuffled[-2], shuffled[-1]  # overtaken by the next
        frames.extend(shuffled)
    write_capture(tmp_path / "c.pcap", frames)
    imported = import_pcap(tmp_path / "c.pcap")
    assert imported.problems == ()
    assert imported.recording.without_timing() == read_recording(proxied).without_timing()


async def test_connections_that_cannot_be_followed_are_reported(tmp_path: Path) -> None:
    _, flows = await recorded_traffic(tmp_path)
    frames = []
    for index, flow in enumerate(flows):
        mine = packets(flow)
        if index == 0:
            del mine[6]  # a data segment the capture lost
        elif index == 1:
            mine = mine[2:]  # the capture began after the handshake
        frames.extend(mine)
    write_capture(tmp_path / "c.pcap", frames)
    imported = import_pcap(tmp_path / "c.pcap")
    assert len(imported.recording.sessions) == len(flows) - 2
    text = "\n".join(imported.problems)
    assert "missing from the capture" in text and "began before the capture" in text


def test_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    with pytest.raises(CaptureError, match=r"bad\.pcap: not a pcap or pcapng capture"):
        import_pcap(bad)
    assert main(["import", "pcap", str(bad)]) == 2


async def test_import_command_writes_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, flows = await recorded_traffic(tmp_path)
    frames = sorted((f for flow in flows for f in packets(flow)), key=lambda f: f[0])
    capture = tmp_path / "c.pcap"
    write_capture(capture, frames)
    data = capture.read_bytes()
    capture.write_bytes(data[:-30])  # cut inside the last packet
    out = tmp_path / "imported.jsonl"
    assert main(["import", "pcap", str(capture), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"written to {out}" in printed.out
    assert "could not be read" in printed.err
    assert len(read_recording(out).sessions) >= len(flows) - 1


def _tcpdump() -> str | None:
    return shutil.which("tcpdump") or (
        "/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None
    )


@pytest.mark.skipif(
    (_tcpdump() is None or os.geteuid() != 0) and not os.environ.get("CI"),
    reason="tcpdump (run as root) is not available",
)
async def test_a_loopback_capture_equals_the_proxy_recording(tmp_path: Path) -> None:
    binary = _tcpdump()
    assert binary is not None, "tcpdump is not installed (.ci/install installs it)"
    out = tmp_path / "proxy.jsonl"
    capture = tmp_path / "lo.pcap"
    async with sink() as server, proxy_in_front(server.address[1], out) as proxy:
        command = [binary, "-i", "lo", "-U", "--immediate-mode", "-B", "65536", "-n", "-s", "0"]
        command += ["-w", str(capture), f"tcp port {proxy.address[1]}"]
        dump = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert dump.stderr is not None
            with trio.fail_after(30):
                first = await trio.to_thread.run_sync(dump.stderr.readline)
            assert b"listening on" in first, first
            snapshot = await run_scenario(varied(proxy.address[1]))
            await settle(proxy, snapshot.counters.started)
            # tcpdump writes each packet as it sees it (-U): wait until the capture holds
            # as many whole sessions as the proxy recorded, rather than for a while.
            port = frozenset({proxy.address[1]})
            with trio.move_on_after(10):
                while _whole_sessions(capture, port) < proxy.stats.sessions_recorded:
                    await trio.sleep(0.02)
        finally:
            dump.terminate()
            _, said = await trio.to_thread.run_sync(dump.communicate)
    match = re.search(rb"(\d+) packets? dropped by kernel", said)
    dropped = int(match.group(1)) if match else 0
    imported = import_pcap(capture, ports=port)
    proxied = {s.client: s for s in read_recording(out).without_timing()}
    kept = {s.client: s for s in imported.recording.without_timing()}
    # A capture that lost packets cannot show the importer right or wrong: it fails.
    assert dropped == 0, f"tcpdump dropped {dropped} packets"
    assert imported.problems == ()
    assert sorted(kept) == sorted(proxied)
    for client, session in kept.items():
        assert _same(session, proxied[client]), client


def _whole_sessions(capture: Path, ports: frozenset[int]) -> int:
    """Sessions the capture holds from their first packet to their last, so far."""
    try:
        imported = import_pcap(capture, ports=ports)
    except CaptureError:  # not even the file header yet
        return 0
    return len(imported.recording.sessions) - len(imported.problems)


def _same(a: object, b: object) -> bool:
    from dataclasses import replace

    return replace(a, number=0) == replace(b, number=0)  # type: ignore[type-var]
