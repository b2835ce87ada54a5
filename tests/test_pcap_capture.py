"""Captures built packet by packet from a scripted SMTP conversation (no live traffic):
every link type read, TCP put back together (reordering, repeats, overlaps, sequence
numbers that wrap), and each connection that cannot be followed reported with why."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from smtpbench import __version__
from smtpbench.recording import RecordedSession
from smtpbench.recording.pcap import CaptureError, import_pcap

Address = tuple[str, int]
CLIENT: Address = ("192.0.2.1", 40000)
SERVER: Address = ("192.0.2.25", 25)
CLIENT6: Address = ("2001:db8::1", 40000)
SERVER6: Address = ("2001:db8::25", 25)
EPOCH = 1_700_000_000.0
SYN, ACK, FIN, RST, PUSH = (
    dpkt.tcp.TH_SYN,
    dpkt.tcp.TH_ACK,
    dpkt.tcp.TH_FIN,
    dpkt.tcp.TH_RST,
    dpkt.tcp.TH_PUSH,
)
CONTENT = b"Subject: x\r\n\r\nhello\r\n"
TALK: list[tuple[str, bytes]] = [
    ("s", b"220 mx.test ESMTP\r\n"),
    ("c", b"EHLO c.test\r\n"),
    ("s", b"250-mx.test\r\n250 8BITMIME\r\n"),
    ("c", b"MAIL FROM:<a@b.test>\r\n"),
    ("s", b"250 2.1.0 Ok\r\n"),
    ("c", b"RCPT TO:<c@d.test>\r\n"),
    ("s", b"250 2.1.5 Ok\r\n"),
    ("c", b"DATA\r\n"),
    ("s", b"354 go ahead\r\n"),
    ("c", CONTENT + b".\r\n"),
    ("s", b"250 2.0.0 queued\r\n"),
    ("c", b"QUIT\r\n"),
    ("s", b"221 2.0.0 bye\r\n"),
]
# What the recording holds of TALK: each step's kind, line and reply codes.
STEPS = [
    ("banner", None, [220]),
    ("command", b"EHLO c.test", [250]),
    ("command", b"MAIL FROM:<a@b.test>", [250]),
    ("command", b"RCPT TO:<c@d.test>", [250]),
    ("command", b"DATA", [354]),
    ("data", None, [250]),
    ("command", b"QUIT", [221]),
]
CLIENT_BYTES = sum(len(data) for side, data in TALK if side == "c")
SERVER_BYTES = sum(len(data) for side, data in TALK if side == "s")


@dataclass
class Segment:
    ts: float
    src: Address
    dst: Address
    seq: int
    ack: int
    flags: int
    data: bytes = b""
    claimed: int = 0  # extra bytes the IP header claims (a packet cut by the snap length)
    options: bytes = b""  # IPv4 options
    zero_length: bool = False  # a length of 0 in the IP header, as segmentation offload writes


def connection(
    talk: list[tuple[str, bytes]] = TALK,
    *,
    client: Address = CLIENT,
    server: Address = SERVER,
    mss: int = 1000,
    isn: tuple[int, int] = (1000, 5000),
    start: float = 0.0,
    closer: str | None = "s",
) -> list[Segment]:
    """The packets of one connection in order: handshake, each side's data in segments
    of ``mss`` bytes, then FINs (``closer``'s first; None: no FIN)."""
    mod = 1 << 32
    t = start
    out = [Segment(t, client, server, isn[0], 0, SYN)]
    out.append(Segment(t, server, client, isn[1], (isn[0] + 1) % mod, SYN | ACK))
    seq = {"c": isn[0] + 1, "s": isn[1] + 1}
    for side, data in talk:
        t += 0.01
        src, dst = (client, server) if side == "c" else (server, client)
        other = "s" if side == "c" else "c"
        for begin in range(0, len(data), mss):
            piece = data[begin : begin + mss]
            out.append(Segment(t, src, dst, seq[side] % mod, seq[other] % mod, ACK | PUSH, piece))
            seq[side] += len(piece)
    if closer is not None:
        t += 0.01
        first, second = ("s", "c") if closer == "s" else ("c", "s")
        ends = {"c": (client, server), "s": (server, client)}
        for side in (first, second):
            other = "s" if side == "c" else "c"
            src, dst = ends[side]
            out.append(Segment(t, src, dst, seq[side] % mod, seq[other] % mod, FIN | ACK))
            seq[side] += 1
    return out


def ip_packet(segment: Segment) -> bytes:
    tcp = dpkt.tcp.TCP(
        sport=segment.src[1],
        dport=segment.dst[1],
        seq=segment.seq,
        ack=segment.ack,
        flags=segment.flags,
        data=segment.data,
    )
    if ":" in segment.src[0]:
        ip6 = dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, segment.src[0]),
            dst=socket.inet_pton(socket.AF_INET6, segment.dst[0]),
            nxt=dpkt.ip.IP_PROTO_TCP,
            hlim=64,
            data=tcp,
        )
        raw = bytearray(bytes(ip6))
        plen = 0 if segment.zero_length else len(bytes(tcp)) + segment.claimed
        raw[4:6] = plen.to_bytes(2, "big")  # payload length
        return bytes(raw)
    ip = dpkt.ip.IP(
        src=socket.inet_aton(segment.src[0]),
        dst=socket.inet_aton(segment.dst[0]),
        p=dpkt.ip.IP_PROTO_TCP,
        opts=segment.options,
        data=tcp,
    )
    ip.hl = 5 + len(segment.options) // 4  # header length in 32-bit words
    raw = bytearray(bytes(ip))
    total = 0 if segment.zero_length else len(raw) + segment.claimed
    raw[2:4] = total.to_bytes(2, "big")  # total length
    return bytes(raw)


LINKS = {
    "ethernet": dpkt.pcap.DLT_EN10MB,
    "sll": dpkt.pcap.DLT_LINUX_SLL,
    "sll2": 276,
    "loopback": dpkt.pcap.DLT_NULL,
    "loop": 108,
    "raw": 101,
    "ipv4": 228,
}


def frame(link: str, packet: bytes) -> bytes:
    six = packet[0] >> 4 == 6
    ethtype = dpkt.ethernet.ETH_TYPE_IP6 if six else dpkt.ethernet.ETH_TYPE_IP
    if link == "ethernet":
        return bytes(
            dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=ethtype, data=packet)
        )
    if link == "sll":
        return bytes(dpkt.sll.SLL(ethtype=ethtype, data=packet))
    if link == "sll2":
        return bytes(dpkt.sll2.SLL2(ethtype=ethtype, data=packet))
    if link in ("loopback", "loop"):
        return bytes(dpkt.loopback.Loopback(family=30 if six else 2, data=packet))
    return packet


def write(
    path: Path,
    segments: list[Segment],
    link: str = "ethernet",
    *,
    ng: bool = False,
    extra: list[bytes] | None = None,
) -> Path:
    with path.open("wb") as stream:
        writer_class = dpkt.pcapng.Writer if ng else dpkt.pcap.Writer
        writer = writer_class(stream, snaplen=65535, linktype=LINKS[link])
        for raw in extra or []:
            writer.writepkt(raw, ts=EPOCH)
        for segment in segments:
            writer.writepkt(frame(link, ip_packet(segment)), ts=EPOCH + segment.ts)
    return path


def steps(session: RecordedSession) -> list[tuple[str, bytes | None, list[int | None]]]:
    return [(s.kind, s.line, [r.code for r in s.replies]) for s in session.steps]


# -- reading --------------------------------------------------------------------------


@pytest.mark.parametrize("link", sorted(LINKS))
def test_every_link_type_gives_the_conversation(tmp_path: Path, link: str) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", connection(), link))
    assert imported.problems == ()
    (session,) = imported.recording.sessions
    assert steps(session) == STEPS
    assert session.client == "192.0.2.1:40000" and session.closed_by == "server"
    # Handshake, 13 data segments, 2 FINs.
    assert imported.packets == 2 + len(TALK) + 2


@pytest.mark.parametrize("link", ["ethernet", "sll", "sll2", "loopback", "raw"])
def test_ipv6_is_read_and_its_addresses_shown_in_brackets(tmp_path: Path, link: str) -> None:
    segments = connection(client=CLIENT6, server=SERVER6)
    imported = import_pcap(write(tmp_path / "c.pcap", segments, link))
    assert imported.problems == ()
    (session,) = imported.recording.sessions
    assert steps(session) == STEPS and session.client == "[2001:db8::1]:40000"
    assert imported.recording.header.server == "[2001:db8::25]:25"


def test_the_recording_says_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path / "mx.pcapng", connection(start=2.5), ng=True)
    header = import_pcap(path, keep_content=False, redact_auth=False).recording.header
    assert header.source == "pcap" and header.server == "192.0.2.25:25"
    assert header.epoch == EPOCH + 2.5
    assert header.started_at == "2023-11-14T22:13:22.500+00:00"
    assert (header.content, header.auth) == ("hash", "kept")
    assert header.extra == {"capture": "mx.pcapng"} and header.smtpbench == __version__
    kept = import_pcap(path).recording
    assert kept.path == str(path)
    assert (kept.header.content, kept.header.auth) == ("full", "redacted")
    data = next(s for s in kept.sessions[0].steps if s.kind == "data")
    assert data.content is not None and data.content.data == CONTENT


def test_sessions_are_numbered_in_order_of_their_start(tmp_path: Path) -> None:
    late = connection(client=("192.0.2.1", 40001), start=5.0)
    early = connection(client=("192.0.2.2", 40000), start=1.0)
    other = connection(client=("192.0.2.3", 40000), server=("192.0.2.26", 587), start=3.0)
    imported = import_pcap(write(tmp_path / "c.pcap", late + early + other))
    sessions = imported.recording.sessions
    assert [s.client for s in sessions] == ["192.0.2.2:40000", "192.0.2.3:40000", "192.0.2.1:40001"]
    assert [s.number for s in sessions] == [0, 1, 2]
    assert [s.start for s in sessions] == pytest.approx([0.0, 2.0, 4.0])
    assert imported.recording.header.server == "192.0.2.25:25, 192.0.2.26:587"
    only = import_pcap(tmp_path / "c.pcap", ports=frozenset({587}))
    assert [s.client for s in only.recording.sessions] == ["192.0.2.3:40000"]
    assert only.problems == ()


def test_an_empty_capture_is_an_empty_recording(tmp_path: Path) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", []))
    assert imported.recording.sessions == () and imported.problems == ()
    assert imported.recording.header.epoch == 0.0 and imported.packets == 0


def test_the_client_closing_first_is_told(tmp_path: Path) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", connection(closer="c")))
    assert imported.recording.sessions[0].closed_by == "client"


def test_a_connection_still_open_at_the_end_was_closed_by_the_capture(tmp_path: Path) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", connection(closer=None)))
    assert imported.problems == ()
    assert imported.recording.sessions[0].closed_by == "capture"
    assert steps(imported.recording.sessions[0]) == STEPS


def test_a_reset_ends_the_connection(tmp_path: Path) -> None:
    segments = connection(closer=None)
    last = segments[-1]
    reset = Segment(last.ts + 0.01, SERVER, CLIENT, last.ack, 0, RST)
    later = connection(client=("192.0.2.1", 40000), start=9.0, isn=(77, 88))
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments, reset, *later]))
    assert imported.problems == ()
    first, second = imported.recording.sessions
    assert first.closed_by == "server" and steps(first) == STEPS == steps(second)


# -- TCP put back together ------------------------------------------------------------


def test_segments_reordered_repeated_and_overlapping(tmp_path: Path) -> None:
    segments = connection(mss=5)
    rng = random.Random(3)
    body = segments[2:-2]
    shuffled: list[Segment] = []
    for segment in body:
        shuffled.append(segment)
        if rng.random() < 0.3:
            shuffled.append(segment)  # a retransmission
        if rng.random() < 0.3 and len(segment.data) > 2:
            # A repeat that starts inside a segment and goes past it.
            shifted = Segment(
                segment.ts, segment.src, segment.dst, segment.seq + 2, segment.ack,
                segment.flags, segment.data[2:],
            )  # fmt: skip
            shuffled.append(shifted)
    # Each segment may be overtaken by the next few from the same side.
    for i in range(len(shuffled) - 3, 0, -1):
        j = i + rng.randrange(3)
        if shuffled[i].src == shuffled[j].src:
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments[:2], *shuffled, *segments[-2:]]))
    assert imported.problems == ()
    assert steps(imported.recording.sessions[0]) == STEPS


def test_a_longer_repeat_at_the_same_place_wins(tmp_path: Path) -> None:
    segments = connection()
    banner = segments[2]
    # A first, short copy of the banner that was held (it came before a gap), then the
    # whole banner again at the same place.
    short = Segment(banner.ts, SERVER, CLIENT, banner.seq, banner.ack, ACK, banner.data[:4])
    rest = segments[3:]
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments[:2], short, banner, *rest]))
    assert imported.problems == ()
    assert steps(imported.recording.sessions[0]) == STEPS


@pytest.mark.parametrize("client_isn", [(1 << 32) - 3, (1 << 32) - 1])
def test_sequence_numbers_that_wrap_around(tmp_path: Path, client_isn: int) -> None:
    segments = connection(isn=(client_isn, (1 << 32) - 40), mss=7)
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems == ()
    assert steps(imported.recording.sessions[0]) == STEPS


def test_a_repeated_syn_is_the_same_connection_and_a_new_one_starts_another(
    tmp_path: Path,
) -> None:
    segments = connection(closer=None)
    again = [segments[0], *segments]  # the client sent its SYN twice
    imported = import_pcap(write(tmp_path / "c.pcap", again))
    assert len(imported.recording.sessions) == 1 and imported.problems == ()
    # The same ports used again with a new sequence number: the first one is over.
    reused = connection(closer=None, start=5.0, isn=(90000, 95000))
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments, *reused]))
    assert len(imported.recording.sessions) == 2 and imported.problems == ()


# -- what cannot be followed ----------------------------------------------------------


def test_a_segment_the_capture_lost_is_named_with_its_size_and_place(tmp_path: Path) -> None:
    segments = connection()
    lost = next(s for s in segments if s.data == b"MAIL FROM:<a@b.test>\r\n")
    imported = import_pcap(write(tmp_path / "c.pcap", [s for s in segments if s is not lost]))
    assert imported.recording.sessions == ()
    # The client had sent its EHLO (13 bytes) before the lost MAIL (22 bytes).
    (problem,) = imported.problems
    assert problem == (
        "192.0.2.1:40000 -> 192.0.2.25:25: left out: 22 bytes from the client are missing "
        "from the capture (at offset 13)"
    )


def test_the_servers_last_bytes_lost_are_known_from_the_clients_acknowledgement(
    tmp_path: Path,
) -> None:
    segments = connection(closer="c")
    bye = next(s for s in segments if s.data == b"221 2.0.0 bye\r\n")
    kept = [s for s in segments if s is not bye]
    # The client's FIN acknowledges the server's bytes, the lost 221 among them.
    imported = import_pcap(write(tmp_path / "c.pcap", kept))
    (problem,) = imported.problems
    assert problem.endswith(
        f"left out: 15 bytes from the server are missing from the capture "
        f"(at offset {SERVER_BYTES - 15})"
    )


def test_a_connection_without_its_syn_ack(tmp_path: Path) -> None:
    segments = connection()
    imported = import_pcap(write(tmp_path / "c.pcap", [segments[0], *segments[2:]]))
    assert imported.problems == (
        "192.0.2.1:40000 -> 192.0.2.25:25: left out: the SYN-ACK is not in the capture",
    )


@pytest.mark.parametrize("side", ["client", "server"])
def test_a_packet_cut_by_the_snap_length(tmp_path: Path, side: str) -> None:
    segments = connection()
    source = CLIENT if side == "client" else SERVER
    cut = next(s for s in segments if s.data and s.src == source)
    cut.claimed = 10  # the IP header says 10 bytes more than the capture kept
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems == (
        f"192.0.2.1:40000 -> 192.0.2.25:25: left out: the capture cut a packet from the "
        f"{side} short (snap length)",
    )


def test_a_connection_that_began_before_the_capture(tmp_path: Path) -> None:
    segments = connection()[2:]  # no SYN, no SYN-ACK
    imported = import_pcap(write(tmp_path / "c.pcap", segments), ports=frozenset({25}))
    assert imported.recording.sessions == ()
    assert imported.problems == (
        f"192.0.2.1:40000 -> 192.0.2.25:25: left out: began before the capture "
        f"({CLIENT_BYTES + SERVER_BYTES} bytes seen without the SYN)",
    )
    # Without ports, each direction is told as it was seen.
    imported = import_pcap(tmp_path / "c.pcap")
    assert sorted(imported.problems) == [
        f"192.0.2.1:40000 -> 192.0.2.25:25: left out: began before the capture "
        f"({CLIENT_BYTES} bytes seen without the SYN)",
        f"192.0.2.25:25 -> 192.0.2.1:40000: left out: began before the capture "
        f"({SERVER_BYTES} bytes seen without the SYN)",
    ]
    # Traffic of other ports is not SMTP's: nothing is said of it.
    assert import_pcap(tmp_path / "c.pcap", ports=frozenset({587})).problems == ()


def test_a_connection_where_nothing_was_said(tmp_path: Path) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", connection([])))
    assert imported.problems == (
        "192.0.2.1:40000 -> 192.0.2.25:25: left out: nothing was said (not SMTP?)",
    )


def test_a_connection_that_turned_to_tls_is_kept_up_to_starttls(tmp_path: Path) -> None:
    talk = [
        ("s", b"220 mx.test ESMTP\r\n"),
        ("c", b"EHLO c.test\r\n"),
        ("s", b"250-mx.test\r\n250 STARTTLS\r\n"),
        ("c", b"STARTTLS\r\n"),
        ("s", b"220 2.0.0 Ready to start TLS\r\n"),
        ("c", b"\x16\x03\x01\x00\x05hello"),  # a TLS record
        ("s", b"\x16\x03\x03\x00\x05there"),
    ]
    imported = import_pcap(write(tmp_path / "c.pcap", connection(talk)))
    assert imported.problems == (
        "192.0.2.1:40000 -> 192.0.2.25:25: kept up to STARTTLS; what followed is encrypted",
    )
    (session,) = imported.recording.sessions
    assert steps(session) == [
        ("banner", None, [220]),
        ("command", b"EHLO c.test", [250]),
        ("command", b"STARTTLS", [220]),
    ]


def test_other_traffic_is_passed_over_and_damaged_frames_counted(tmp_path: Path) -> None:
    arp = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\xff" * 6, type=0x0806))
    udp = dpkt.ip.IP(
        src=socket.inet_aton("192.0.2.1"),
        dst=socket.inet_aton("192.0.2.53"),
        p=dpkt.ip.IP_PROTO_UDP,
        data=dpkt.udp.UDP(sport=5353, dport=53, data=b"x"),
    )
    udp.len = len(bytes(udp))
    dns = bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=udp))
    broken = bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP)) + b"\x45\x00"
    path = write(tmp_path / "c.pcap", connection(), extra=[arp, dns, broken, broken])
    imported = import_pcap(path)
    assert steps(imported.recording.sessions[0]) == STEPS
    assert imported.problems == (
        f"{path}: 2 packets could not be read (damaged, or the file was cut short)",
    )


def test_a_raw_frame_of_another_protocol_is_passed_over(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", connection(), "raw", extra=[b"", b"\x10\x00\x00\x00"])
    imported = import_pcap(path)
    assert imported.problems == () and len(imported.recording.sessions) == 1


def test_a_capture_cut_inside_a_packet(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", connection())
    # The last packet (a FIN: 14 + 20 + 20 bytes) and its 16-byte record header: cut
    # inside the header.
    path.write_bytes(path.read_bytes()[: -(54 + 10)])
    imported = import_pcap(path)
    count = 2 + len(TALK) + 2
    assert imported.packets == count - 1
    assert imported.problems[0].startswith(
        f"{path}: the capture ends in the middle of packet {count} ("
    )


def test_files_that_cannot_be_read_as_captures(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"nothing\.pcap: cannot read: No such file"):
        import_pcap(tmp_path / "nothing.pcap")
    odd = tmp_path / "odd.pcap"
    with odd.open("wb") as stream:
        writer = dpkt.pcap.Writer(stream, linktype=147)  # a user link type
        writer.writepkt(b"\x00" * 20, ts=EPOCH)
    with pytest.raises(CaptureError) as caught:
        import_pcap(odd)
    assert str(caught.value) == (
        f"{odd}: link type 147 is not one smtpbench reads "
        "(Ethernet, Linux cooked, loopback, raw IP)"
    )


def test_the_servers_last_bytes_lost_before_its_fin_are_counted_without_the_fin(
    tmp_path: Path,
) -> None:
    segments = connection(closer="s")
    bye = next(s for s in segments if s.data == b"221 2.0.0 bye\r\n")
    imported = import_pcap(write(tmp_path / "c.pcap", [s for s in segments if s is not bye]))
    (problem,) = imported.problems
    assert problem.endswith(
        f"left out: 15 bytes from the server are missing from the capture "
        f"(at offset {SERVER_BYTES - 15})"
    )


@pytest.mark.parametrize("link", ["sll", "sll2"])
def test_cooked_frames_of_other_protocols_are_passed_over_and_short_ones_counted(
    tmp_path: Path, link: str
) -> None:
    cooked = dpkt.sll.SLL if link == "sll" else dpkt.sll2.SLL2
    arp = bytes(cooked(ethtype=0x0806, data=b"\x00" * 28))
    short = bytes(cooked(ethtype=dpkt.ethernet.ETH_TYPE_IP)) + b"\x45\x00"
    path = write(tmp_path / "c.pcap", connection(), link, extra=[arp, short])
    imported = import_pcap(path)
    assert steps(imported.recording.sessions[0]) == STEPS
    assert imported.problems == (
        f"{path}: 1 packets could not be read (damaged, or the file was cut short)",
    )


AUTH_TALK = [
    ("s", b"220 mx.test ESMTP\r\n"),
    ("c", b"EHLO c.test\r\n"),
    ("s", b"250-mx.test\r\n250 AUTH PLAIN\r\n"),
    ("c", b"AUTH PLAIN AHUAcw==\r\n"),
    ("s", b"235 2.7.0 ok\r\n"),
    ("c", b"MAIL FROM:<a@b.test>\r\n"),
    ("s", b"250 2.1.0 Ok\r\n"),
    ("c", b"RCPT TO:<c@d.test>\r\n"),
    ("s", b"250 2.1.5 Ok\r\n"),
    ("c", b"DATA\r\n"),
    ("s", b"354 go ahead\r\n"),
    ("c", CONTENT + b".\r\n"),
    ("s", b"250 2.0.0 queued\r\n"),
]


def test_credentials_and_content_are_kept_only_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", connection(AUTH_TALK))
    kept = import_pcap(path, keep_content=True, redact_auth=False).recording.sessions[0]
    auth = next(s for s in kept.steps if s.line and s.line.startswith(b"AUTH"))
    assert auth.line == b"AUTH PLAIN AHUAcw==" and not auth.redacted
    data = next(s for s in kept.steps if s.kind == "data")
    assert data.content is not None and data.content.data == CONTENT
    hidden = import_pcap(path, keep_content=False).recording.sessions[0]
    auth = next(s for s in hidden.steps if s.line and s.line.startswith(b"AUTH"))
    assert auth.line == b"AUTH PLAIN" and auth.redacted
    data = next(s for s in hidden.steps if s.kind == "data")
    assert data.content is not None and data.content.data is None
    assert data.content.size == len(CONTENT)


def test_a_session_lasts_until_its_last_fin(tmp_path: Path) -> None:
    segments = connection(start=1.0)
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    # The FINs come 0.01 s after the last reply, which is 0.01 s after each step.
    assert imported.recording.sessions[0].duration == pytest.approx(segments[-1].ts - 1.0)


def test_ports_used_again_after_a_full_close_are_a_new_connection(tmp_path: Path) -> None:
    # Even with the same initial sequence number: the first connection was over.
    first = connection()
    second = connection(start=5.0)
    imported = import_pcap(write(tmp_path / "c.pcap", [*first, *second]))
    assert imported.problems == () and len(imported.recording.sessions) == 2


def test_a_last_segment_with_fin_and_reset_ends_the_connection_once(tmp_path: Path) -> None:
    segments = connection(closer="s")
    last = segments[-1]
    segments[-1] = Segment(last.ts, last.src, last.dst, last.seq, last.ack, FIN | RST | ACK)
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems == () and len(imported.recording.sessions) == 1


def test_a_segment_from_before_the_stream_began_is_passed_over(tmp_path: Path) -> None:
    segments = connection()
    # A keep-alive probe carrying one byte at the sequence number before the first.
    probe = Segment(0.015, CLIENT, SERVER, 1000, 5001, ACK, b"\x00")
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments[:3], probe, *segments[3:]]))
    assert imported.problems == () and steps(imported.recording.sessions[0]) == STEPS


def test_a_stray_segment_far_ahead_is_bytes_missing(tmp_path: Path) -> None:
    segments = connection()
    stray = Segment(0.015, CLIENT, SERVER, 1001 + 1_500_000_000, 5001, ACK, b"x")
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments[:3], stray, *segments[3:]]))
    assert imported.recording.sessions == ()
    assert "bytes from the client are missing from the capture" in imported.problems[0]


def test_overlapping_and_contained_segments_held_for_a_gap(tmp_path: Path) -> None:
    segments = connection()
    content = next(s for s in segments if s.data == CONTENT + b".\r\n")
    data = content.data

    def piece(begin: int, end: int) -> Segment:
        return Segment(
            content.ts, CLIENT, SERVER, content.seq + begin, content.ack, ACK, data[begin:end]
        )

    # Come before the first 5 bytes: a long piece, a shorter one at the same place, one
    # inside it; then a piece overlapping what is delivered by then, and the first bytes.
    pieces = [piece(5, 20), piece(5, 9), piece(7, 9), piece(12, len(data)), piece(0, 5)]
    at = segments.index(content)
    rebuilt = [*segments[:at], *pieces, *segments[at + 1 :]]
    imported = import_pcap(write(tmp_path / "c.pcap", rebuilt))
    assert imported.problems == ()
    session = imported.recording.sessions[0]
    assert steps(session) == STEPS
    step = next(s for s in session.steps if s.kind == "data")
    assert step.content is not None and step.content.data == CONTENT


def test_a_packet_cut_by_a_single_byte(tmp_path: Path) -> None:
    segments = connection()
    next(s for s in segments if s.data and s.src == CLIENT).claimed = 1
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems[0].endswith(
        "the capture cut a packet from the client short (snap length)"
    )


@pytest.mark.parametrize("how", ["options", "zero length", "zero length ipv6"])
def test_ip_options_and_a_zero_total_length_are_not_a_cut(tmp_path: Path, how: str) -> None:
    six = how.endswith("ipv6")
    segments = connection(client=CLIENT6, server=SERVER6) if six else connection()
    for segment in segments:
        if how == "options":
            segment.options = b"\x01\x01\x01\x00"  # NOP, NOP, NOP, end of options
        else:
            segment.zero_length = True
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems == ()
    assert steps(imported.recording.sessions[0]) == STEPS


def test_a_segment_overlapping_what_was_delivered_keeps_only_its_new_bytes(
    tmp_path: Path,
) -> None:
    segments = connection()
    content = next(s for s in segments if s.data == CONTENT + b".\r\n")

    def piece(begin: int, end: int) -> Segment:
        data = content.data[begin:end]
        return Segment(content.ts, CLIENT, SERVER, content.seq + begin, content.ack, ACK, data)

    at = segments.index(content)
    rebuilt = [*segments[:at], piece(0, 10), piece(5, len(content.data)), *segments[at + 1 :]]
    imported = import_pcap(write(tmp_path / "c.pcap", rebuilt))
    step = next(s for s in imported.recording.sessions[0].steps if s.kind == "data")
    assert step.content is not None and step.content.data == CONTENT


def test_held_pieces_go_on_as_soon_as_the_gap_fills(tmp_path: Path) -> None:
    segments = connection()
    content = next(s for s in segments if s.data == CONTENT + b".\r\n")

    def piece(begin: int, end: int, ts: float) -> Segment:
        data = content.data[begin:end]
        return Segment(ts, CLIENT, SERVER, content.seq + begin, content.ack, ACK, data)

    # Held: a piece, one inside it, and the rest; then the first bytes fill the gap.
    t = content.ts
    pieces = [piece(5, 20, t), piece(7, 9, t), piece(20, len(content.data), t), piece(0, 5, t)]
    at = segments.index(content)
    imported = import_pcap(
        write(tmp_path / "c.pcap", [*segments[:at], *pieces, *segments[at + 1 :]])
    )
    session = imported.recording.sessions[0]
    step = next(s for s in session.steps if s.kind == "data")
    # The message ended with those packets, not with the next one the client sent.
    assert step.content is not None and step.content.data == CONTENT
    assert step.replies[0].code == 250
    quit_step = session.steps[-1]
    assert step.at < quit_step.at
    assert step.at == pytest.approx(t, abs=1e-6)


def test_a_server_that_greets_and_closes_is_a_session(tmp_path: Path) -> None:
    imported = import_pcap(write(tmp_path / "c.pcap", connection(TALK[:1])))
    assert imported.problems == ()
    assert steps(imported.recording.sessions[0]) == [("banner", None, [220])]


def test_connections_left_out_do_not_stop_the_others(tmp_path: Path) -> None:
    silent = connection([], client=("192.0.2.1", 40001), start=0.0)
    broken = connection(client=("192.0.2.1", 40002), start=1.0)
    del broken[1]  # no SYN-ACK
    good = connection(client=("192.0.2.1", 40003), start=2.0)
    imported = import_pcap(write(tmp_path / "c.pcap", [*silent, *broken, *good]))
    assert [s.client for s in imported.recording.sessions] == ["192.0.2.1:40003"]
    assert len(imported.problems) == 2


def test_the_clients_last_bytes_lost_are_known_from_the_servers_acknowledgement(
    tmp_path: Path,
) -> None:
    segments = connection(closer="s")
    lost = next(s for s in segments if s.data == b"QUIT\r\n")
    imported = import_pcap(write(tmp_path / "c.pcap", [s for s in segments if s is not lost]))
    (problem,) = imported.problems
    assert problem.endswith(
        f"left out: 6 bytes from the client are missing from the capture "
        f"(at offset {CLIENT_BYTES - 6})"
    )


def test_a_reset_from_the_client_says_the_client_closed(tmp_path: Path) -> None:
    segments = connection(closer=None)
    last = segments[-1]
    reset = Segment(last.ts + 0.01, CLIENT, SERVER, last.ack, 0, RST)
    imported = import_pcap(write(tmp_path / "c.pcap", [*segments, reset]))
    assert imported.recording.sessions[0].closed_by == "client"


def test_a_cut_of_one_byte_with_ip_options(tmp_path: Path) -> None:
    segments = connection()
    for segment in segments:
        segment.options = b"\x01\x01\x01\x00"
    next(s for s in segments if s.data and s.src == SERVER).claimed = 1
    imported = import_pcap(write(tmp_path / "c.pcap", segments))
    assert imported.problems[0].endswith(
        "the capture cut a packet from the server short (snap length)"
    )


def test_a_fin_with_the_last_reply_that_overtakes_the_one_before(tmp_path: Path) -> None:
    long_bye = b"221 2.0.0 bye, closing the connection now\r\n"
    talk = [*TALK[:-1], ("s", long_bye)]
    segments = connection(talk, closer=None)
    last = segments[-1]
    assert last.data == long_bye
    last.flags |= FIN  # the last reply and the FIN in one segment
    before = next(s for s in segments if s.data == b"250 2.0.0 queued\r\n")
    quit_ = next(s for s in segments if s.data == b"QUIT\r\n")
    # The server's "250 queued" is held up; the client's QUIT, and the 221 with the FIN,
    # come first.
    order = [s for s in segments if s is not before]
    order.insert(order.index(last) + 1, before)
    client_fin = Segment(
        last.ts + 0.01, CLIENT, SERVER, quit_.seq + 6, last.seq + len(long_bye) + 1, FIN | ACK
    )
    imported = import_pcap(write(tmp_path / "c.pcap", [*order, client_fin]))
    assert imported.problems == ()
    session = imported.recording.sessions[0]
    assert steps(session) == STEPS and session.closed_by == "server"
