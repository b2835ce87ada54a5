"""Opening connections and naming what went wrong with them."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import trio

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.errors import RemoteProtocolError


class TargetError(Exception):
    """The target cannot be used at all (the name does not resolve): a configuration error."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str  # as the user wrote it
    port: int
    family: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int]

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


async def resolve(host: str, port: int) -> Address:
    """Looks the name up once for the whole run: per-connection lookups would time the
    resolver, not the mail server."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise TargetError(f"cannot resolve {host!r}: {err.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return Address(host, port, family, sockaddr)


async def connect(address: Address) -> trio.SocketStream:
    sock = trio.socket.socket(address.family, socket.SOCK_STREAM)
    try:
        await sock.connect(address.sockaddr)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)  # sets TCP_NODELAY: commands must not wait for Nagle


def classify(exc: BaseException) -> ErrorClass:
    """The error class of an exception raised while talking to the server."""
    if isinstance(exc, trio.TooSlowError):
        return ErrorClass.TIMEOUT
    if isinstance(exc, RemoteProtocolError):
        return ErrorClass.PROTOCOL
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.REFUSED
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError) and (
        cause is None or isinstance(cause, ConnectionResetError | BrokenPipeError)
    ):
        return ErrorClass.RESET
    if isinstance(cause, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return ErrorClass.RESET
    if isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE):
        return ErrorClass.RESET
    if _is_tls_error(cause):
        return ErrorClass.TLS
    return ErrorClass.NETWORK


def _is_tls_error(exc: BaseException | None) -> bool:
    import ssl

    return isinstance(exc, ssl.SSLError | ssl.CertificateError)
