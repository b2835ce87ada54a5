"""The PROXY protocol header (HAProxy's, versions 1 and 2): who the client is, sent
first on a connection to a server behind a proxy (Postfix's postscreen with
``postscreen_upstream_proxy_protocol = haproxy``, or any server behind HAProxy).

Sans-IO: ``proxy_header`` builds one, ``parse_proxy_header`` reads one from the
bytes received so far. Only TCP over IPv4 and IPv6 (and v1's ``UNKNOWN`` and v2's
LOCAL command, which name no client) are spoken.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX: Final = 107  # the longest v1 line, CRLF included
_V2_FIXED: Final = 16


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header this side understands."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """The connection as the proxy saw it; ``source`` None for a header that names no
    client (v1 UNKNOWN, v2 LOCAL)."""

    source: str | None
    destination: str | None = None
    source_port: int = 0
    destination_port: int = 0


def proxy_header(
    version: int, source: str, source_port: int, destination: str, destination_port: int
) -> bytes:
    """The header saying the client at ``source`` connected to ``destination``."""
    src = ipaddress.ip_address(source)
    dst = ipaddress.ip_address(destination)
    if src.version != dst.version:
        raise ValueError(f"the PROXY header's addresses are of one family: {source}, {destination}")
    if version == 1:
        family = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {family} {src} {dst} {source_port} {destination_port}\r\n".encode()
    if version != 2:
        raise ValueError(f"PROXY protocol version 1 or 2, got {version}")
    addresses = src.packed + dst.packed + struct.pack(">HH", source_port, destination_port)
    family = 0x11 if src.version == 4 else 0x21  # TCP over IPv4, over IPv6
    return V2_SIGNATURE + bytes((0x21, family)) + struct.pack(">H", len(addresses)) + addresses


def parse_proxy_header(data: bytes) -> tuple[ProxyHeader | None, int]:
    """(header, bytes it took) from the start of ``data``; (None, 0) until it is whole.
    ``ProxyHeaderError`` when ``data`` does not start with one."""
    if data[:1] == b"P" or (data and not V2_SIGNATURE.startswith(data[:12])):
        return _v1(data)
    if len(data) < _V2_FIXED:
        return None, 0
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("not a PROXY protocol header")
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise ProxyHeaderError(f"PROXY v2: version {version}, command {command} not known")
    length = struct.unpack(">H", data[14:16])[0]
    if len(data) < _V2_FIXED + length:
        return None, 0
    body = data[_V2_FIXED : _V2_FIXED + length]
    used = _V2_FIXED + length
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(None), used
    family = data[13]
    if family == 0x11 and length >= 12:
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack(">HH", body[8:12])
    elif family == 0x21 and length >= 36:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack(">HH", body[32:36])
    else:
        raise ProxyHeaderError(f"PROXY v2: address family {family:#04x} not spoken here")
    return ProxyHeader(str(src), str(dst), sport, dport), used


def _v1(data: bytes) -> tuple[ProxyHeader | None, int]:
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX or not b"PROXY ".startswith(data[:6]):
            raise ProxyHeaderError("not a PROXY protocol header")
        return None, 0
    if end + 2 > V1_MAX:
        raise ProxyHeaderError("PROXY v1 header longer than 107 bytes")
    words = data[:end].decode("ascii", "replace").split(" ")
    if words[0] != "PROXY" or len(words) < 2:
        raise ProxyHeaderError("not a PROXY protocol header")
    if words[1] == "UNKNOWN":
        return ProxyHeader(None), end + 2
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        raise ProxyHeaderError(f"PROXY v1: malformed header {data[:end]!r}")
    try:
        src, dst = ipaddress.ip_address(words[2]), ipaddress.ip_address(words[3])
        sport, dport = int(words[4]), int(words[5])
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1: malformed header {data[:end]!r}") from None
    if (src.version == 4) != (words[1] == "TCP4") or not (
        0 <= sport < 65536 and 0 <= dport < 65536
    ):
        raise ProxyHeaderError(f"PROXY v1: malformed header {data[:end]!r}")
    return ProxyHeader(str(src), str(dst), sport, dport), end + 2


__all__ = [
    "ProxyHeader",
    "ProxyHeaderError",
    "parse_proxy_header",
    "proxy_header",
]
