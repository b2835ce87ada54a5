"""The recording proxy: real clients connect to it, it relays every byte to the real
server and back, and writes what it saw as a recording.

Transparency: bytes go through unchanged and at once, in both directions; a
read is forwarded before it is looked at. The only exceptions concern
STARTTLS, which a recorder cannot pass through unread:

- ``refuse`` (the default, and the only choice without a certificate): the
  proxy answers STARTTLS itself with ``454 4.7.0 TLS not available`` and takes
  the STARTTLS line out of EHLO replies, so clients go on in clear text. To do
  that it forwards the server's bytes by whole lines (a line that has not ended
  waits for its end).
- ``terminate`` (with ``--tls-cert`` and ``--tls-key``): STARTTLS goes to the
  server; when it answers 220 the proxy starts TLS with the server (as a
  client) and then with the client (with the given certificate), and records
  what passes in between in clear.

Misbehaviour stays inside its connection: a client that resets, a server that
sends garbage or closes early, a server that cannot be reached (the client then
gets ``421 4.4.0``) are recorded as they happened, or counted, and the proxy
goes on. Each session is written when it ends, one line, flushed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import trio

from smtpbench import __version__
from smtpbench.recording import Conversation, RecordingHeader, RecordingWriter
from smtpbench.recording.observer import MAX_REPLY_LINE, MAX_REPLY_LINES
from smtpbench.servers.accepting import serve_quietly

logger = logging.getLogger("smtpbench.record")

RECEIVE_SIZE = 65536
REFUSE_REPLY = b"454 4.7.0 TLS not available through the recording proxy\r\n"
UNREACHABLE_REPLY = b"421 4.4.0 The server behind the recording proxy cannot be reached\r\n"
CLOSE_WAIT = 5.0  # seconds the server gets to close after the client did

TlsMode = Literal["refuse", "terminate"]


@dataclass(frozen=True)
class ProxyConfig:
    upstream_host: str
    upstream_port: int
    out: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, see RecordingProxy.address
    keep_content: bool = True  # False: message sizes and SHA-256 only (--no-content)
    redact_auth: bool = True
    tls_cert: str | None = None  # with tls_key: terminate STARTTLS
    tls_key: str | None = None
    upstream_ca: str | None = None  # verify the server's certificate against this CA
    connect_timeout: float = 30.0
    idle_timeout: float = 600.0  # a side silent this long ends the session

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a TLS certificate and its key go together: give both or neither")

    @property
    def tls_mode(self) -> TlsMode:
        return "terminate" if self.tls_cert is not None else "refuse"


@dataclass
class ProxyStats:
    connections: int = 0
    sessions_recorded: int = 0
    upstream_failures: int = 0  # the server could not be reached
    tls_sessions: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # sessions ended by an error, by kind
    accept_errors: Counter[str] = field(default_factory=Counter)  # "EMFILE"...: accept failed

    def summary(self) -> str:
        parts = [
            f"{self.connections} connections",
            f"{self.sessions_recorded} sessions recorded",
        ]
        if self.upstream_failures:
            parts.append(f"{self.upstream_failures} could not reach the server")
        if self.tls_sessions:
            parts.append(f"{self.tls_sessions} through TLS")
        errors = sum(self.errors.values())
        if errors:
            parts.append(f"{errors} ended by errors")
        failed = sum(self.accept_errors.values())
        if failed:
            parts.append(f"{failed} accepts failed ({', '.join(sorted(self.accept_errors))})")
        return ", ".join(parts)


def server_tls_context(config: ProxyConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def upstream_tls_context(config: ProxyConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.upstream_ca)
    if config.upstream_ca is None:
        # A load-test proxy in front of test servers: their certificates are rarely valid.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RecordingProxy:
    """A running proxy: configuration, address, statistics, and the file it writes."""

    def __init__(
        self,
        config: ProxyConfig,
        listeners: list[trio.SocketListener],
        writer: RecordingWriter,
        started: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.writer = writer
        self.stats = ProxyStats()
        self.clock = clock
        self.started = started  # the clock at the recording's start
        self.server_context = server_tls_context(config)
        self.client_context = upstream_tls_context(config) if self.server_context else None
        sockname = listeners[0].socket.getsockname()
        self.address: tuple[str, int] = (sockname[0], sockname[1])
        self._numbers = itertools.count()

    async def handle(self, client: trio.SocketStream) -> None:
        stats = self.stats
        stats.connections += 1
        number = next(self._numbers)
        conversation = Conversation(
            number,
            self.clock(),
            _address(client),
            keep_content=self.config.keep_content,
            redact_auth=self.config.redact_auth,
        )
        try:
            upstream = await self._connect(client)
        except (OSError, trio.TooSlowError) as exc:
            stats.upstream_failures += 1
            logger.warning("cannot reach %s: %s", self._upstream(), exc)
            with trio.move_on_after(1):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await client.send_all(UNREACHABLE_REPLY)
            await trio.aclose_forcefully(client)
            return
        if upstream is None:  # the client left while the server had not answered the connect
            await trio.aclose_forcefully(client)
            conversation.client_closed(self.clock())
            self.writer.write(conversation.finish(self.clock(), epoch=self.started))
            stats.sessions_recorded += 1
            return
        relay = _Relay(self, conversation, client, upstream)
        try:
            await relay.run()
        except Exception as exc:
            name = type(exc).__name__
            stats.errors[name] += 1
            logger.warning("recording proxy session ended by %s", name, exc_info=exc)
        finally:
            # Shielded: when the proxy stops (SIGTERM, Ctrl-C) the sessions still open are
            # written too, closed_by "proxy".
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(relay.client)
                await trio.aclose_forcefully(relay.upstream)
            if conversation.protocol_error:
                stats.errors["protocol error"] += 1
            session = conversation.finish(self.clock(), epoch=self.started)
            self.writer.write(session)
            stats.sessions_recorded += 1
            if relay.tls:
                stats.tls_sessions += 1

    async def _connect(self, client: trio.SocketStream) -> trio.SocketStream | None:
        """The connection to the server; None when the client leaves first (a server that
        does not answer the connect holds it for up to ``connect_timeout``)."""
        upstream: trio.SocketStream | None = None
        failed: OSError | trio.TooSlowError | None = None
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await client_left(client)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                with trio.fail_after(self.config.connect_timeout):
                    upstream = await trio.open_tcp_stream(
                        self.config.upstream_host, self.config.upstream_port
                    )
            except (OSError, trio.TooSlowError) as exc:
                failed = exc
            nursery.cancel_scope.cancel()
        if failed is not None:
            raise failed
        return upstream

    def _upstream(self) -> str:
        host = self.config.upstream_host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.config.upstream_port}"


class _Relay:
    """Both directions of one connection."""

    def __init__(
        self,
        proxy: RecordingProxy,
        conversation: Conversation,
        client: trio.SocketStream,
        upstream: trio.SocketStream,
    ) -> None:
        self.proxy = proxy
        self.conv = conversation
        self.client: trio.abc.Stream = client
        self.upstream: trio.abc.Stream = upstream
        self.refuse = proxy.config.tls_mode == "refuse"
        self.idle = proxy.config.idle_timeout
        self.to_client = trio.Lock()  # the server's replies and the proxy's own
        self.tls = False
        self._changed = trio.Event()
        self._unsent = bytearray()  # client bytes read and not yet forwarded
        self._forwarded = 0  # client stream offset of _unsent[0]
        self._hello: list[bytes] = []  # an EHLO reply being held for rewriting
        self._partial = bytearray()  # a server line not yet ended (refuse mode)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changed.wait()

    async def _wait_for_server(self, ready: Callable[[], bool]) -> None:
        """Waits for the server's replies while not reading the client; a client that
        leaves meanwhile (before a silent server's banner) ends the wait, and the session."""
        if ready():
            return
        left = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal left
                await client_left(self.client)
                left = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await self._wait_until(ready)
            nursery.cancel_scope.cancel()
        if left:
            self.conv.client_closed(self.proxy.clock())
            raise trio.BrokenResourceError("the client left")

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._from_server, nursery.cancel_scope)
            await self._guarded(self._from_client)
            # The client is done: the server gets a moment to answer and close.
            nursery.cancel_scope.deadline = trio.current_time() + CLOSE_WAIT

    async def _guarded(self, pump: Callable[[], Awaitable[None]]) -> None:
        """Runs one direction; a side that breaks, resets or goes silent ends it."""
        try:
            await pump()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except trio.TooSlowError:
            self.proxy.stats.errors["idle timeout"] += 1
        except (OSError, ssl.SSLError) as exc:
            self.proxy.stats.errors[type(exc).__name__] += 1

    # -- client to server -----------------------------------------------------------

    async def _from_client(self) -> None:
        clock = self.proxy.clock
        conv = self.conv
        while True:
            with trio.fail_after(self.idle):
                try:
                    data = await self.client.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            at = clock()
            if not data:
                conv.client_closed(at)
                if isinstance(self.upstream, trio.SocketStream):
                    with contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, OSError
                    ):
                        await self.upstream.send_eof()
                return
            self._unsent += data
            conv.client_data(at, data)
            span = conv.take_starttls_span()
            if span is None:
                await self._forward(len(self._unsent) - self._held())
                continue
            start, end = span
            await self._forward(max(0, start - self._forwarded))
            if self.refuse:
                await self._refuse_starttls(end)
            else:
                await self._forward(max(0, end - self._forwarded))
                await self._wait_for_server(lambda: not conv.awaiting_starttls)
                if self.tls:  # clear text sent after STARTTLS is dropped (RFC 3207)
                    self._forwarded += len(self._unsent)
                    del self._unsent[:]
            await self._forward(len(self._unsent) - self._held())

    def _held(self) -> int:
        """Refuse mode keeps back a line that may turn out to be STARTTLS."""
        if not self.refuse:
            return 0
        tail = self.conv.partial_line.upper()
        if tail and (b"STARTTLS\r\n".startswith(tail) or b"STARTTLS\n".startswith(tail)):
            return len(tail)
        return 0

    async def _forward(self, count: int) -> None:
        if count <= 0:
            return
        data = bytes(self._unsent[:count])
        del self._unsent[:count]
        self._forwarded += count
        await self.upstream.send_all(data)

    async def _refuse_starttls(self, end: int) -> None:
        conv = self.conv
        # The STARTTLS line is not forwarded; its answer waits for every earlier reply.
        drop = max(0, end - self._forwarded)
        del self._unsent[:drop]
        self._forwarded += drop
        await self._wait_for_server(lambda: conv.outstanding <= 1)
        async with self.to_client:
            await self.client.send_all(REFUSE_REPLY)
            conv.server_data(self.proxy.clock(), REFUSE_REPLY)

    # -- server to client -----------------------------------------------------------

    async def _from_server(self, scope: trio.CancelScope) -> None:
        try:
            await self._guarded(self._server_pump)
        finally:
            self._poke()
            scope.cancel()  # the server is done, or failed: so is the session

    async def _server_pump(self) -> None:
        clock = self.proxy.clock
        conv = self.conv
        while True:
            with trio.fail_after(self.idle):
                try:
                    data = await self.upstream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            at = clock()
            if not data:
                if self._partial:
                    async with self.to_client:
                        await self._send_lines(at, [bytes(self._partial)])
                conv.server_closed(at)
                return
            async with self.to_client:
                if self.refuse:
                    await self._relay_lines(at, data)
                else:
                    await self.client.send_all(data)
                    conv.server_data(at, data)
            self._poke()
            if conv.protocol_error:
                return  # an endless reply: the session ends here
            if conv.tls_due:
                await self._start_tls()
                self._poke()

    async def _relay_lines(self, at: float, data: bytes) -> None:
        """Refuse mode: whole lines, with STARTTLS taken out of EHLO replies."""
        pending = self._partial
        pending += data
        out: list[bytes] = []
        while not self.conv.protocol_error:
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > MAX_REPLY_LINE:
                    self.conv.give_up(f"reply line longer than {MAX_REPLY_LINE} bytes")
                break
            line = bytes(pending[: end + 1])
            del pending[: end + 1]
            if self._hello or self.conv.answering_hello:
                if len(self._hello) >= MAX_REPLY_LINES or len(line) > MAX_REPLY_LINE + 2:
                    self.conv.give_up(
                        f"EHLO reply past {MAX_REPLY_LINES} lines of at most {MAX_REPLY_LINE} bytes"
                    )
                    break
                self._hello.append(line)
                if line[3:4] == b"-":
                    continue  # the EHLO reply goes on
                line = _without_starttls(self._hello)
                self._hello = []
            out.append(line)
            self.conv.server_data(at, line)
        if out:
            await self.client.send_all(b"".join(out))

    async def _send_lines(self, at: float, lines: list[bytes]) -> None:
        data = b"".join(lines)
        await self.client.send_all(data)
        self.conv.server_data(at, data)

    async def _start_tls(self) -> None:
        proxy = self.proxy
        assert proxy.client_context is not None and proxy.server_context is not None
        upstream = trio.SSLStream(
            self.upstream,
            proxy.client_context,
            server_hostname=proxy.config.upstream_host,
            https_compatible=True,
        )
        await upstream.do_handshake()
        self.upstream = upstream
        client = trio.SSLStream(
            self.client, proxy.server_context, server_side=True, https_compatible=True
        )
        self.client = client
        await client.do_handshake()
        self.tls = True
        self.conv.tls_started(proxy.clock())


CLIENT_POLL = 0.5  # seconds between looks at a client that sent more while it waits


async def client_left(stream: trio.abc.Stream) -> None:
    """Returns once the client has closed its side or reset, without taking its bytes
    (they stay for the relay to read)."""
    if not isinstance(stream, trio.SocketStream):
        await trio.sleep_forever()  # TLS: only STARTTLS waits, and that is in clear text
    while True:
        try:
            if await stream.socket.recv(1, socket.MSG_PEEK) == b"":
                return
        except OSError:
            return  # reset
        await trio.sleep(CLIENT_POLL)  # bytes wait to be read: look again later


def _without_starttls(lines: list[bytes]) -> bytes:
    """An EHLO reply's lines without the STARTTLS one; the last line stays the last."""
    kept = [line for line in lines if line[4:].strip().upper() != b"STARTTLS"]
    if not kept:
        return b"".join(lines)
    last = kept[-1]
    if last[3:4] == b"-":
        kept[-1] = last[:3] + b" " + last[4:]
    return b"".join(kept)


def recording_header(config: ProxyConfig, epoch: float) -> RecordingHeader:
    host = config.upstream_host
    host = f"[{host}]" if ":" in host else host
    return RecordingHeader(
        source="proxy",
        epoch=epoch,
        started_at=datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds"),
        server=f"{host}:{config.upstream_port}",
        content="full" if config.keep_content else "hash",
        auth="redacted" if config.redact_auth else "kept",
        smtpbench=__version__,
    )


async def serve_proxy(
    config: ProxyConfig,
    *,
    task_status: trio.TaskStatus[RecordingProxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen, write the header, report the running proxy, serve until cancelled; the
    file is closed at the end. ``proxy = await nursery.start(serve_proxy, config)``."""
    server_tls_context(config)  # read the certificate now: its errors come out of start()
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    epoch = time.time()
    writer = RecordingWriter(config.out, recording_header(config, epoch))
    try:
        proxy = RecordingProxy(config, listeners, writer, trio.current_time())
        task_status.started(proxy)
        await serve_quietly(proxy.handle, listeners, proxy.stats.accept_errors, logger)
    finally:
        writer.close()
