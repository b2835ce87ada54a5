"""Opening connections and naming what went wrong with them."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass

import trio

from smtpbench.engine.reactor import StepTimeout
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


class PlainStream(trio.abc.HalfCloseableStream):
    """A TCP connection on a bare non-blocking socket, for the probe's one conversation
    at a time (load and replay sessions are driven by the reactor, ``reactor.py``).

    It does what ``trio.SocketStream`` does for a client that owns its socket
    alone (one task sends, then reads), without the per-call bookkeeping: each
    send is tried at once and waits only if the kernel buffer is full, each read
    waits for readability and then reads. Errors come out as trio's
    ``BrokenResourceError`` with the ``OSError`` as cause, as from SocketStream,
    and TLS wraps it with ``trio.SSLStream`` like any trio stream.
    """

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @property
    def socket(self) -> socket.socket:
        return self._sock

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self._sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(view):
            await trio.lowlevel.wait_writable(sock)
            try:
                sent += sock.send(view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(max_bytes or 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._sock.fileno() != -1:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()


async def connect(address: Address) -> PlainStream:
    """Opens a TCP connection; ``OSError`` (refused, unreachable) when it cannot."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Commands are small and each waits for its reply: Nagle would only delay them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address.sockaddr)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            await trio.lowlevel.wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))  # errno picks the subclass: refused, ...
    except BaseException:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise
    return PlainStream(sock)


def classify(exc: BaseException) -> ErrorClass:
    """The error class of an exception raised while talking to the server."""
    if isinstance(exc, trio.TooSlowError | StepTimeout):
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
