"""A tcpdump capture of plaintext SMTP (pcap or pcapng) turned into a recording.

Packets are read with dpkt in capture order; each TCP connection's two byte
streams are put back together by sequence number (retransmissions and
overlaps trimmed, segments that came early held until the gap before them
fills), and handed, as they become contiguous, to the same ``Conversation``
the recording proxy uses, with each packet's time. So a capture and a proxy
recording of the same traffic give the same sessions, commands, replies and
content.

The side that sent the SYN is the client. A connection whose SYN is not in the
capture, or that misses bytes in either direction (a packet the capture
dropped or cut short), cannot be followed: it is left out and reported, with
why. A connection that turned to TLS after STARTTLS is kept up to there and
reported too.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import dpkt

from smtpbench import __version__
from smtpbench.recording.model import RecordedSession, Recording, RecordingHeader
from smtpbench.recording.observer import Conversation

_SEQ = 1 << 32
_LINKS: dict[int, str] = {
    dpkt.pcap.DLT_EN10MB: "ethernet",
    dpkt.pcap.DLT_LINUX_SLL: "sll",
    276: "sll2",  # DLT_LINUX_SLL2: tcpdump -i any
    dpkt.pcap.DLT_NULL: "loopback",
    108: "loopback",  # DLT_LOOP
    101: "raw",  # DLT_RAW (LINKTYPE_RAW)
    12: "raw",
    14: "raw",
    228: "raw",  # DLT_IPV4
    229: "raw",  # DLT_IPV6
}


class CaptureError(Exception):
    """The capture cannot be read at all: not pcap or pcapng, or a link type not handled."""


@dataclass
class _Direction:
    isn: int | None = None
    next: int = 0  # the next stream offset expected
    held: dict[int, tuple[float, bytes]] = field(default_factory=dict)  # offset -> data
    fin: int | None = None  # stream offset of the FIN
    closed: bool = False
    acked: int = 0  # the furthest stream offset the other side acknowledged

    def missing(self) -> int:
        """Bytes the other side acknowledged that the capture does not hold (the FIN's
        sequence number, acknowledged as well, is not a byte)."""
        acked = self.acked if self.fin is None else min(self.acked, self.fin)
        return max(0, acked - self.next)

    def offset(self, seq: int) -> int:
        assert self.isn is not None
        return (seq - self.isn - 1) % _SEQ


@dataclass
class _Flow:
    client: tuple[str, int]
    server: tuple[str, int]
    started: float
    conversation: Conversation
    up: _Direction = field(default_factory=_Direction)  # client to server
    down: _Direction = field(default_factory=_Direction)  # server to client
    problem: str = ""
    ended: bool = False
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class PcapImport:
    recording: Recording
    problems: tuple[str, ...]  # one line per connection left out or cut short
    packets: int


def _open(stream: IO[bytes], path: str) -> Any:
    try:
        return dpkt.pcap.UniversalReader(stream)
    except (ValueError, dpkt.dpkt.UnpackError, struct.error) as err:
        raise CaptureError(f"{path}: not a pcap or pcapng capture ({err})") from None


def _packets(reader: Any, problems: list[str], path: str) -> Iterator[tuple[float, bytes]]:
    iterator = iter(reader)
    count = 0
    while True:
        try:
            ts, data = next(iterator)
        except StopIteration:
            return
        except (ValueError, dpkt.dpkt.UnpackError, struct.error, EOFError) as err:
            problems.append(f"{path}: the capture ends in the middle of packet {count + 1} ({err})")
            return
        count += 1
        yield float(ts), data


_IP_TYPES = (dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_IP6)


def _ip(link: str, frame: bytes) -> Any:
    """The IPv4 or IPv6 packet in a frame; None for other traffic; ValueError for a frame
    that says it carries IP but does not hold a whole IP header (damaged, cut short)."""
    claims_ip = True
    if link == "ethernet":
        outer = dpkt.ethernet.Ethernet(frame)
        claims_ip = outer.type in _IP_TYPES
        packet = outer.data
    elif link == "sll":
        outer = dpkt.sll.SLL(frame)
        claims_ip = outer.ethtype in _IP_TYPES
        packet = outer.data
    elif link == "sll2":
        outer = dpkt.sll2.SLL2(frame)
        claims_ip = outer.ethtype in _IP_TYPES
        packet = outer.data
    elif link == "loopback":
        packet = dpkt.loopback.Loopback(frame).data
    else:
        version = frame[0] >> 4 if frame else 0
        if version == 4:
            packet = dpkt.ip.IP(frame)
        else:
            packet = dpkt.ip6.IP6(frame) if version == 6 else None
    if isinstance(packet, dpkt.ip.IP | dpkt.ip6.IP6):
        return packet
    if claims_ip and isinstance(packet, bytes):
        raise ValueError("a frame too short for its IP header")
    return None


def _address(packet: Any, raw: bytes) -> str:
    family = socket.AF_INET6 if isinstance(packet, dpkt.ip6.IP6) else socket.AF_INET
    return socket.inet_ntop(family, raw)


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Importer:
    def __init__(
        self, path: str, ports: frozenset[int] | None, keep_content: bool, redact_auth: bool
    ) -> None:
        self.path = path
        self.ports = ports
        self.keep_content = keep_content
        self.redact_auth = redact_auth
        self.flows: dict[tuple[tuple[str, int], tuple[str, int]], _Flow] = {}
        self.done: list[_Flow] = []
        self.unseen: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}  # no SYN: bytes
        self.problems: list[str] = []
        self.damaged = 0  # frames that could not be read

    def packet(self, ts: float, link: str, frame: bytes) -> None:
        try:
            ip = _ip(link, frame)
        except (dpkt.dpkt.UnpackError, struct.error, IndexError, ValueError):
            self.damaged += 1
            return
        if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
            return
        tcp = ip.data
        src = (_address(ip, ip.src), tcp.sport)
        dst = (_address(ip, ip.dst), tcp.dport)
        expected = ip.len - ip.__hdr_len__ if isinstance(ip, dpkt.ip.IP) else ip.plen
        payload = bytes(tcp.data)
        header = tcp.off * 4
        if isinstance(ip, dpkt.ip.IP):
            header += (ip.hl - 5) * 4
        short = expected - header - len(payload) if expected else 0
        syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
        ack = bool(tcp.flags & dpkt.tcp.TH_ACK)
        if syn and not ack:
            if self.ports is not None and dst[1] not in self.ports:
                return
            self._open(ts, src, dst, tcp.seq)
            return
        flow, up = self._find(src, dst)
        if flow is None:
            if payload and (self.ports is None or dst[1] in self.ports or src[1] in self.ports):
                key = (src, dst) if self.ports is None or dst[1] in self.ports else (dst, src)
                self.unseen[key] = self.unseen.get(key, 0) + len(payload)
            return
        direction = flow.up if up else flow.down
        if syn:  # the SYN-ACK: the server's first sequence number
            direction.isn = tcp.seq
            return
        if direction.isn is None:
            flow.problem = flow.problem or "the SYN-ACK is not in the capture"
            return
        if short > 0 and not flow.problem:
            side = "client" if up else "server"
            flow.problem = f"the capture cut a packet from the {side} short (snap length)"
        other = flow.down if up else flow.up
        if ack and other.isn is not None:
            acked = other.offset(tcp.ack)
            if acked < _SEQ // 2:
                other.acked = max(other.acked, acked)
        offset = direction.offset(tcp.seq)
        if payload:
            self._segment(flow, up, ts, offset, payload)
        if tcp.flags & dpkt.tcp.TH_FIN:
            direction.fin = offset + len(payload)
            self._deliver(flow, up, ts)
        if tcp.flags & dpkt.tcp.TH_RST:
            self._close(flow, up, ts)
            self._end(flow, ts)

    def _open(self, ts: float, client: tuple[str, int], server: tuple[str, int], seq: int) -> None:
        key = (client, server)
        old = self.flows.get(key)
        if old is not None:
            if old.up.isn == seq:
                return  # a retransmitted SYN: the same connection, kept
            self._end(old, ts)  # the ports used again: that connection is over
        conversation = Conversation(
            0, ts, _show(client), keep_content=self.keep_content, redact_auth=self.redact_auth
        )
        flow = _Flow(client, server, ts, conversation, last=ts)
        flow.up.isn = seq
        self.flows[key] = flow

    def _find(self, src: tuple[str, int], dst: tuple[str, int]) -> tuple[_Flow | None, bool]:
        flow = self.flows.get((src, dst))
        if flow is not None:
            return flow, True
        flow = self.flows.get((dst, src))
        return flow, False

    def _segment(self, flow: _Flow, up: bool, ts: float, offset: int, payload: bytes) -> None:
        direction = flow.up if up else flow.down
        if offset + len(payload) <= direction.next or offset > _SEQ // 2:
            return  # all seen already (a retransmission), or before the stream began
        if offset < direction.next:
            payload = payload[direction.next - offset :]
            offset = direction.next
        held = direction.held.get(offset)
        if held is None or len(held[1]) < len(payload):
            direction.held[offset] = (ts, payload)
        self._deliver(flow, up, ts)

    def _deliver(self, flow: _Flow, up: bool, ts: float) -> None:
        direction = flow.up if up else flow.down
        conversation = flow.conversation
        while True:
            found = None
            for offset in sorted(direction.held):
                if offset <= direction.next:
                    found = offset
                    break
            if found is None:
                break
            at, data = direction.held.pop(found)
            data = data[direction.next - found :]
            if not data:
                continue
            direction.next += len(data)
            flow.last = max(flow.last, at)
            if flow.problem:
                continue
            if up:
                conversation.client_data(ts, data)
            else:
                conversation.server_data(ts, data)
                if conversation.tls_due:
                    conversation.tls_unreadable()
        if direction.fin is not None and direction.next >= direction.fin and not direction.closed:
            self._close(flow, up, ts)
            if flow.up.closed and flow.down.closed:
                self._end(flow, ts)

    def _close(self, flow: _Flow, up: bool, ts: float) -> None:
        direction = flow.up if up else flow.down
        direction.closed = True
        flow.last = max(flow.last, ts)
        if up:
            flow.conversation.client_closed(ts)
        else:
            flow.conversation.server_closed(ts)

    def _end(self, flow: _Flow, ts: float) -> None:
        if flow.ended:
            return
        flow.ended = True
        flow.last = max(flow.last, ts)
        for direction, side in ((flow.up, "client"), (flow.down, "server")):
            if flow.problem:
                break
            gap = min(direction.held) - direction.next if direction.held else direction.missing()
            if gap:
                flow.problem = (
                    f"{gap} bytes from the {side} are missing from the capture "
                    f"(at offset {direction.next})"
                )
        self.flows.pop((flow.client, flow.server), None)
        self.done.append(flow)

    def finish(self) -> list[RecordedSession]:
        for flow in list(self.flows.values()):
            self._end(flow, flow.last)
        flows = sorted(self.done, key=lambda f: (f.started, f.client))
        epoch = flows[0].started if flows else 0.0
        sessions: list[RecordedSession] = []
        for flow in flows:
            name = f"{_show(flow.client)} -> {_show(flow.server)}"
            if flow.problem:
                self.problems.append(f"{name}: left out: {flow.problem}")
                continue
            conversation = flow.conversation
            conversation.number = len(sessions)
            session = conversation.finish(flow.last, epoch=epoch)
            if len(session.steps) == 1 and not session.steps[0].replies:
                self.problems.append(f"{name}: left out: nothing was said (not SMTP?)")
                continue
            if conversation.encrypted:
                self.problems.append(f"{name}: kept up to STARTTLS; what followed is encrypted")
            if not conversation.closed_by:
                session = _with_closed_by(session, "capture")
            sessions.append(session)
        for (client, server), size in self.unseen.items():
            self.problems.append(
                f"{_show(client)} -> {_show(server)}: left out: began before the capture "
                f"({size} bytes seen without the SYN)"
            )
        return sessions


def _with_closed_by(session: RecordedSession, who: str) -> RecordedSession:
    from dataclasses import replace

    return replace(session, closed_by=who)


def _read(
    stream: IO[bytes],
    name: str,
    ports: frozenset[int] | None,
    keep_content: bool,
    redact_auth: bool,
    problems: list[str],
) -> tuple[_Importer, int]:
    reader = _open(stream, name)
    link = _LINKS.get(reader.datalink())
    if link is None:
        raise CaptureError(
            f"{name}: link type {reader.datalink()} is not one smtpbench reads "
            "(Ethernet, Linux cooked, loopback, raw IP)"
        )
    importer = _Importer(name, ports, keep_content, redact_auth)
    packets = 0
    for ts, frame in _packets(reader, problems, name):
        packets += 1
        importer.packet(ts, link, frame)
    return importer, packets


def import_pcap(
    path: str | Path,
    *,
    ports: frozenset[int] | None = None,
    keep_content: bool = True,
    redact_auth: bool = True,
) -> PcapImport:
    """The recording a capture holds. ``ports``: only connections to these server ports
    (None: every TCP connection whose SYN is in the capture). ``CaptureError`` when the
    file cannot be read as a capture; connections that cannot be followed are in
    ``problems``."""
    name = str(path)
    problems: list[str] = []
    try:
        with Path(path).open("rb") as stream:
            importer, packets = _read(stream, name, ports, keep_content, redact_auth, problems)
    except OSError as err:
        raise CaptureError(f"{name}: cannot read: {err.strerror or err}") from None
    sessions = importer.finish()
    problems.extend(importer.problems)
    if importer.damaged:
        problems.append(
            f"{name}: {importer.damaged} packets could not be read (damaged, or the file was "
            "cut short)"
        )
    servers = sorted({_show(flow.server) for flow in importer.done if not flow.problem})
    epoch = min((flow.started for flow in importer.done), default=0.0)
    header = RecordingHeader(
        source="pcap",
        epoch=epoch,
        started_at=datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds"),
        server=servers[0] if len(servers) == 1 else ", ".join(servers),
        content="full" if keep_content else "hash",
        auth="redacted" if redact_auth else "kept",
        smtpbench=__version__,
        extra={"capture": Path(path).name},
    )
    return PcapImport(Recording(header, tuple(sessions), name), tuple(problems), packets)
