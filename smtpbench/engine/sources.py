"""Connecting from a chosen local address: the pool of ``target.source`` on the wire.

Each socket binds its source address before connecting, with Linux's
``IP_BIND_ADDRESS_NO_PORT`` so that the port is chosen at connect time, for the
whole (source, destination) pair: many sources to one server then share nothing
but the server's port, and each source has the whole ephemeral range to itself.
"""

from __future__ import annotations

import contextlib
import errno
import socket

# Linux's value; older Pythons do not name it.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

SourceAddress = tuple[str, int] | tuple[str, int, int, int]


def source_sockaddr(address: str) -> SourceAddress:
    return (address, 0, 0, 0) if ":" in address else (address, 0)


def bind_source(sock: socket.SocketType, source: SourceAddress) -> None:
    """Binds ``sock`` to ``source`` with the port left to connect; ``OSError`` as bind's."""
    with contextlib.suppress(OSError):  # not Linux, or too old: the port is chosen now
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind(source)


def check_sources(sources: tuple[str, ...], family: int) -> tuple[SourceAddress, ...]:
    """The pool as socket addresses, once each is known to be of the target's family and
    bindable on this machine: ``SessionSetupError`` naming the first that is not."""
    from smtpbench.engine.tls import SessionSetupError  # the reactor imports this module

    checked = []
    for address in sources:
        ipv6 = ":" in address
        if ipv6 != (family == socket.AF_INET6):
            want = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise SessionSetupError(
                f"target.source: {address} is not {want}, as the target's address is"
            )
        sockaddr = source_sockaddr(address)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                bind_source(probe, sockaddr)
            except OSError as err:
                reason = (
                    "it is not an address of this machine"
                    if err.errno == errno.EADDRNOTAVAIL
                    else err.strerror or str(err)
                )
                raise SessionSetupError(
                    f"target.source: cannot connect from {address}: {reason}"
                ) from None
        checked.append(sockaddr)
    return tuple(checked)


__all__ = ["SourceAddress", "bind_source", "check_sources", "source_sockaddr"]
