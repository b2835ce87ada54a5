"""Several servers in one run (``target.hosts``): which one each session goes to.

- ``round-robin``: session N goes to server N modulo their number;
- ``weighted``: shares as the weights say, by session number along the golden-ratio
  sequence (evenly spread at any length of run, the same in every worker, no random
  draw taken from the run's seed);
- ``recipient-domain``: by a hash of the domain of the session's first recipient, so
  that one domain always goes to one server, as a relay sharding by domain does.
  Replayed sessions have no plan to look at: they go round-robin.

Names are looked up once, when the run starts.
"""

from __future__ import annotations

import bisect
import socket
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpbench.engine.transport import Address

if TYPE_CHECKING:
    from smtpbench.scenario.model import Target

_GOLDEN = 0.6180339887498949


@dataclass(frozen=True, slots=True)
class Targets:
    """The servers of a run, resolved, with what is needed to pick one per session."""

    addresses: tuple[Address, ...]
    cumulative: tuple[float, ...]
    choose: str

    def pick(self, number: int, domain: str | None = None) -> int:
        count = len(self.addresses)
        if self.choose == "weighted":
            total = self.cumulative[-1]
            point = (number * _GOLDEN) % 1.0 * total
            return min(bisect.bisect_right(self.cumulative, point), count - 1)
        if self.choose == "recipient-domain" and domain is not None:
            return zlib.crc32(domain.lower().encode("utf-8")) % count
        return number % count


def resolve_targets(target: Target, first: Address) -> Targets | None:
    """``target.hosts`` looked up (``first`` is the first's address, looked up already);
    None for a run with one server. ``OSError`` naming the host that does not resolve."""
    if not target.hosts:
        return None
    addresses = [first]
    for host in target.hosts[1:]:
        try:
            infos = socket.getaddrinfo(host.host, host.port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise OSError(f"target.hosts: cannot resolve {host.host!r}: {err.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        addresses.append(Address(host.host, host.port, family, sockaddr))
    cumulative = []
    total = 0.0
    for host in target.hosts:
        total += host.weight
        cumulative.append(total)
    return Targets(tuple(addresses), tuple(cumulative), target.choose)


def check_connections(
    target: Target, address: Address, claimed_addresses: tuple[str, ...] = ()
) -> None:
    """Before the first session: the source pool is usable and every server of
    ``target.hosts`` resolves, the client addresses a PROXY header claims are of the
    target's family; ``SessionSetupError`` saying which is not."""
    from smtpbench.engine.sources import check_sources
    from smtpbench.engine.tls import SessionSetupError

    check_sources(target.source, address.family)
    try:
        resolve_targets(target, address)
    except OSError as err:
        raise SessionSetupError(str(err)) from None
    ipv6 = address.family == socket.AF_INET6
    for claimed in claimed_addresses:
        if (":" in claimed) != ipv6:
            raise SessionSetupError(
                f"client.addresses: {claimed} is not of the target's family "
                f"({'IPv6' if ipv6 else 'IPv4'}): a PROXY header names both in one"
            )


__all__ = ["Targets", "check_connections", "resolve_targets"]
