"""The embedded SMTP sink: accepts mail and throws it away, as fast as it can.

It is the default target of load runs, so it reads in large chunks, answers
every command already in the buffer (pipelining) and writes all the replies of
one read with one send. Faults from a ``FaultPlan`` make it misbehave on
purpose: delays, stalls, error replies, garbage and dropped connections.

    async with trio.open_nursery() as nursery:
        sink = await nursery.start(serve_sink, SinkConfig(port=0))
        host, port = sink.address
"""

from __future__ import annotations

import itertools
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from smtpbench.faults import EMPTY_FAULTS, FaultPlan
from smtpbench.protocol.proxy_header import ProxyHeaderError, parse_proxy_header
from smtpbench.pushback import Pushback
from smtpbench.servers.accepting import connection_limit, serve_quietly
from smtpbench.servers.sink_capacity import ServiceCapacity
from smtpbench.servers.sink_faults import FaultInjector
from smtpbench.servers.sink_pushback import MaildirWriter, PushbackPolicy
from smtpbench.servers.sink_session import ReceivedMessage, Session

__all__ = [
    "ReceivedMessage",
    "Sink",
    "SinkConfig",
    "SinkStats",
    "make_ssl_context",
    "serve_sink",
]

PROXY_READ = 512  # bytes read at a time while a PROXY header is awaited
logger = logging.getLogger("smtpbench.sink")


@dataclass(frozen=True)
class SinkConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, see Sink.address
    hostname: str = "sink.smtpbench.test"  # in the banner and the EHLO reply
    faults: FaultPlan = EMPTY_FAULTS
    seed: int | None = None  # for the fault draws; None: a fresh one
    max_message_size: int = 50 * 1024 * 1024  # advertised as SIZE; bigger messages get 552
    tls_cert: str | None = None  # PEM paths; STARTTLS is offered only with both
    tls_key: str | None = None
    tls_client_ca: str | None = None  # PEM: ask clients for a certificate issued by this CA
    auth: bool = True  # advertise AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2
    # (user, password or token) pairs AUTH must match; empty: any credentials will do
    credentials: tuple[tuple[str, str], ...] = ()
    keep_messages: bool = False  # keep every accepted message in Sink.messages (tests)
    lmtp: bool = False  # speak LMTP (RFC 2033): LHLO, one reply per recipient after data
    implicit_tls: bool = False  # TLS from the first byte (port 465 style); needs a certificate
    # Recipient domains taken; any other gets 554 "Relay access denied". None: every
    # recipient is taken, as an open relay would.
    relay_domains: tuple[str, ...] | None = None
    # RFC 5321 section 4.5.3.2.7: a server waits at least 5 minutes for the next command
    # (idle) and for the rest of one it has begun, or of message content (command).
    idle_timeout: float = 300.0
    command_timeout: float = 300.0
    # Connections open at once; one more is answered 421 and closed. None: what the
    # process's descriptor limit leaves (see connection_limit).
    max_connections: int | None = None
    # Told of each accepted message (its content, None if over max_message_size, its size
    # and how many recipients took it) as the 250 goes out: run --through's receiving
    # sink notes arrivals with it.
    on_message: Callable[[bytes | None, int, int], None] | None = field(
        default=None, compare=False, repr=False
    )
    # Messages a second the sink serves, queueing beyond (sink_capacity.py); None: no limit.
    capacity: float | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a TLS certificate and its key go together: give both or neither")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"a port lies between 0 and 65535, got {self.port}")
        if self.max_message_size < 1:
            raise ValueError(
                f"the maximum message size must be positive, got {self.max_message_size}"
            )
        if not self.hostname or any(c.isspace() for c in self.hostname):
            raise ValueError(f"the host name must be one word, got {self.hostname!r}")
        if not (self.idle_timeout > 0 and self.command_timeout > 0):
            raise ValueError("timeouts must be longer than 0 seconds")
        if self.capacity is not None and not self.capacity > 0:
            raise ValueError(f"the capacity must be above 0 messages/s, got {self.capacity}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"at least one connection, got {self.max_connections}")
        if self.implicit_tls and self.tls_cert is None:
            raise ValueError("implicit TLS needs a certificate and its key")
        if self.relay_domains is not None:
            domains = tuple(domain.strip().lower() for domain in self.relay_domains)
            if not all(domains) or any(" " in domain for domain in domains):
                raise ValueError(f"relay domains are names such as example.org, got {domains}")
            object.__setattr__(self, "relay_domains", domains)

    @property
    def pushback(self) -> Pushback:
        """How the sink pushes back like a real server (carried by the fault plan, as the
        scenario's [sink] table and the flags give it)."""
        return self.faults.pushback

    @property
    def offers_tls(self) -> bool:
        """STARTTLS is offered: a certificate, and the connection does not start with TLS."""
        return self.tls_cert is not None and not self.implicit_tls

    def accepts_recipient(self, address: str) -> bool:
        """Whether RCPT TO:<address> is taken as a relay matter (postmaster always is)."""
        if self.relay_domains is None or "@" not in address:
            return True
        return address.rpartition("@")[2].lower() in self.relay_domains

    def authenticates(self, user: str, secret: str) -> bool:
        if not self.credentials:
            return True
        return any(user == known and secret == password for known, password in self.credentials)

    def password_of(self, user: str) -> str | None:
        for known, password in self.credentials:
            if known == user:
                return password
        return None


@dataclass
class SinkStats:
    """What the sink saw, for summaries and tests. Counters only grow."""

    connections: int = 0  # accepted
    sessions_closed: int = 0  # ended, for whatever reason
    messages_accepted: int = 0  # answered 250 after the final dot or BDAT LAST
    messages_rejected: int = 0  # complete messages answered otherwise (size, faults)
    recipients_accepted: int = 0
    bytes_received: int = 0  # everything read from clients, commands included
    message_bytes: int = 0  # sizes of the accepted messages
    tls_sessions: int = 0  # STARTTLS handshakes completed
    tls_failures: int = 0
    commands: Counter[str] = field(default_factory=Counter)  # by step label, "unrecognized"...
    replies_by_code: Counter[int] = field(default_factory=Counter)  # replies sent, banner included
    faults_injected: Counter[str] = field(default_factory=Counter)  # "delay.DATA", "shutdown"...
    errors: Counter[str] = field(default_factory=Counter)  # sessions ended by an unexpected error
    timeouts: int = 0  # sessions ended by the idle or command timeout (421 sent)
    refused: int = 0  # connections over max_connections (421 sent)
    accept_errors: Counter[str] = field(default_factory=Counter)  # "EMFILE"...: accept failed
    # Pushed back, by reason: "greylist", "client message rate", "client connection limit",
    # "client connection rate", "max sessions" (deferrals) and "tarpit" (replies held).
    deferred: Counter[str] = field(default_factory=Counter)
    maildir: Counter[str] = field(default_factory=Counter)  # "written", "over the limit", "failed"
    # proxy_protocol: connections whose PROXY header named a client, and those closed
    # for a header missing or malformed.
    proxied: int = 0
    bad_proxy_headers: int = 0

    @property
    def active(self) -> int:
        return self.connections - self.sessions_closed

    def summary(self) -> str:
        """One line for a log or a terminal."""
        parts = [
            f"{self.connections} connections",
            f"{self.messages_accepted} messages accepted",
            f"{self.messages_rejected} rejected",
            f"{self.recipients_accepted} recipients",
            f"{self.bytes_received} bytes received",
        ]
        if self.tls_sessions or self.tls_failures:
            parts.append(f"{self.tls_sessions} TLS sessions ({self.tls_failures} failed)")
        faults = sum(self.faults_injected.values())
        if faults:
            parts.append(f"{faults} faults injected")
        errors = sum(self.errors.values())
        if errors:
            parts.append(f"{errors} session errors")
        if self.timeouts:
            parts.append(f"{self.timeouts} timed out")
        if self.refused:
            parts.append(f"{self.refused} refused (too many connections)")
        deferred = sum(self.deferred.values())
        if deferred:
            reasons = ", ".join(f"{why} {n}" for why, n in sorted(self.deferred.items()))
            parts.append(f"{deferred} pushed back ({reasons})")
        if self.maildir:
            maildir = f"{self.maildir['written']} written to the maildir"
            extra = [f"{n} {why}" for why, n in sorted(self.maildir.items()) if why != "written"]
            parts.append(maildir + (f" ({', '.join(extra)})" if extra else ""))
        if self.proxied or self.bad_proxy_headers:
            parts.append(
                f"{self.proxied} PROXY headers ({self.bad_proxy_headers} missing or malformed)"
            )
        failed = sum(self.accept_errors.values())
        if failed:
            kinds = ", ".join(sorted(self.accept_errors))
            parts.append(f"{failed} accepts failed ({kinds})")
        return ", ".join(parts)


class Sink:
    """A running sink: its configuration, address, statistics and kept messages."""

    def __init__(
        self,
        config: SinkConfig,
        listeners: list[trio.SocketListener],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.stats = SinkStats()
        self.messages: list[ReceivedMessage] = []
        self.listeners = listeners
        self.ssl_context = ssl_context
        sockname = listeners[0].socket.getsockname()
        self.address: tuple[str, int] = (sockname[0], sockname[1])
        self.faults = FaultInjector(
            config.faults, random.Random(config.seed), self.stats.faults_injected
        )
        self.capacity = ServiceCapacity(config.capacity) if config.capacity else None
        pushback = config.pushback
        self.pushback = (
            None
            if pushback.is_empty
            else PushbackPolicy(pushback, self.stats.deferred, config.hostname, trio.current_time)
        )
        self.maildir = (
            None
            if pushback.maildir is None
            else MaildirWriter(pushback.maildir, pushback.maildir_limit, self.stats.maildir)
        )
        self.maildir_writes = trio.CapacityLimiter(1)  # one at a time: unique file names
        self.enhanced_codes = pushback.has("ENHANCEDSTATUSCODES")
        self.extensions_off = pushback.no_extension
        self.shutting_down = False  # set once shutdown_after connections have come
        self.max_connections = connection_limit(config.max_connections)
        self._queue_ids = itertools.count(1)
        self._errors_logged: set[str] = set()

    def config_authenticates(self, user: str, secret: str) -> bool:
        return self.config.authenticates(user, secret)

    def next_queue_id(self) -> str:
        return f"{next(self._queue_ids):010X}"

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection; whatever goes wrong stays inside it."""
        stats = self.stats
        stats.connections += 1
        limit = self.config.faults.shutdown_after
        if limit is not None and stats.connections > limit:
            self.shutting_down = True
        client: str | None = None
        early = b""
        if self.config.pushback.proxy_protocol is not None:
            read = await read_proxy_header(stream, self.config.command_timeout)
            if read is None:
                stats.bad_proxy_headers += 1
                stats.sessions_closed += 1
                await trio.aclose_forcefully(stream)
                return
            stats.proxied += 1
            client, early = read
        session = Session(self, stream, client)
        if early:
            session.conn.receive_data(early)
        if stats.active > self.max_connections:
            stats.refused += 1
            try:
                await session.refuse_busy()
            finally:
                stats.sessions_closed += 1
                await trio.aclose_forcefully(stream)
            return
        policy = self.pushback
        if policy is not None:
            deferral = policy.open_session(session.client)
            if deferral is not None:
                try:
                    await session.refuse(deferral.code, deferral.text, deferral.enhanced)
                finally:
                    stats.sessions_closed += 1
                    await trio.aclose_forcefully(stream)
                return
        try:
            if self.config.implicit_tls and not await session.start_implicit_tls():
                return
            await session.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: a normal thing for a sink under load
        except Exception as exc:
            name = type(exc).__name__
            stats.errors[name] += 1
            if name not in self._errors_logged:  # once per kind, not once per connection
                self._errors_logged.add(name)
                logger.warning("sink session ended by %s", name, exc_info=exc)
        finally:
            stats.sessions_closed += 1
            if policy is not None:
                policy.close_session(session.client)
            await trio.aclose_forcefully(session.stream)


async def read_proxy_header(
    stream: trio.abc.ReceiveStream, timeout: float
) -> tuple[str | None, bytes] | None:
    """The client address a PROXY protocol header names (None for a header that names
    none, as a proxy's health check), and what came after it; None when the
    connection does not start with one in time."""
    data = b""
    with trio.move_on_after(timeout):
        while True:
            try:
                header, used = parse_proxy_header(data)
            except ProxyHeaderError:
                return None
            if header is not None:
                return header.source, data[used:]
            try:
                more = await stream.receive_some(PROXY_READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not more:
                return None
            data += more
    return None


def make_ssl_context(config: SinkConfig) -> ssl.SSLContext | None:
    """The server TLS context of ``config``, None without a certificate; OSError or
    ssl.SSLError when the files cannot be read."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(config.tls_client_ca)
    return context


async def serve_sink(
    config: SinkConfig, *, task_status: trio.TaskStatus[Sink] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen, report the running ``Sink`` through ``task_status``, serve until cancelled.

    ``sink = await nursery.start(serve_sink, config)``; errors in binding or in
    the TLS files come out of ``nursery.start``.
    """
    ssl_context = make_ssl_context(config)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    sink = Sink(config, listeners, ssl_context)
    task_status.started(sink)
    await serve_quietly(sink.handle, listeners, sink.stats.accept_errors, logger)
