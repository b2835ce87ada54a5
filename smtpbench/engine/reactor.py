"""The reactor: one trio task per engine process owns every session's socket.

Why not a trio task per session: every reply of every session would then cost
a trip through trio's scheduler (epoll, reschedule, context switch, cancel
scope), which set the engine's ceiling at a fraction of what the protocol work
costs. Sessions are sans-IO machines (``session.py``), so they need no task of
their own:

- A session (a ``Machine``) gives a generator when it begins: its
  conversation's own. It yields what it waits for: ``CONNECT`` (the
  reactor opens a non-blocking connection and resumes it with its ``Link``),
  ``READ`` (resumed with the bytes read, ``b""`` at end of file) or a time to
  sleep until (a replay's recorded pause). It writes through its ``Link``,
  which sends at once and keeps only what the kernel would not take yet,
  watching for writability until that is gone. Errors reach the session as
  exceptions thrown into it where it waits: the ``OSError`` of a failed
  connect, read or write, ``StepTimeout`` past its ``deadline``,
  ``SessionCancelled`` at the end of the grace period. When the generator
  returns or raises, the session is told (``ended``) and accounts for it.
- One epoll set (a ``selectors`` selector elsewhere) holds every socket; the
  reactor waits on its descriptor through trio (``wait_readable``), so trio
  still runs the process (control, publishing, signals) beside it. Each
  wake-up drains every ready socket and advances each ready session as far as
  it can go without waiting, synchronously.
- The ``Feeder`` (the run) is asked each turn what is due: new sessions start
  inside this loop, so arrivals, the cap, the backlog and start lag need no
  task either. The wait is until the next due session, sleeper or timeout
  sweep, whichever is first. trio's timers round up to the millisecond, so the
  last stretch before something due is waited in ``select`` with microsecond
  resolution (never under a mock clock), which keeps start lag well under a
  millisecond. A busy reactor yields to trio at least every
  ``YIELD_EVERY`` seconds.
- Step timeouts are checked by a sweep over the sessions every
  ``sweep_interval`` (a twentieth of the shortest timeout, 50 ms at most):
  a timeout ends a session within that margin, and no heap operation is paid
  per command.
"""

from __future__ import annotations

import errno
import heapq
import math
import os
import select
import selectors
import socket
import sys
import time
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from smtpbench.build_info import mypyc_attr
from smtpbench.engine.sources import SourceAddress, bind_source

if TYPE_CHECKING:
    from smtpbench.engine.transport import Address

RECEIVE_SIZE: Final = 65536
# A socket is read first for this much, most replies whole: a bytes object of at most 512
# bytes comes from Python's own allocator, where one of 64 KiB is the C library's to
# allocate, shrink and free, several times a message. Only a read that comes back full
# is followed by one of RECEIVE_SIZE.
FIRST_READ: Final = 512 - sys.getsizeof(b"")
YIELD_EVERY: Final = 0.001  # seconds of work between trips through trio's scheduler
FINE_WAIT: Final = 0.002  # seconds: waits shorter than this are done in select, not in trio
EVENTS_PER_TURN: Final = 256  # ready sockets handled before the feeder and timers are looked at
CHECK_DUE_EVERY: Final = 8  # ready sockets handled between looks at the clock, within a turn
_SELECT_LIMIT: Final = 1024  # select() takes descriptors below FD_SETSIZE only


class _Request:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CONNECT: Final = _Request("CONNECT")  # resumed with the Link once connected
READ: Final = _Request("READ")  # resumed with bytes (b"" at end of file)
Request = _Request | float  # a float: sleep until that time (trio's clock)


class StepTimeout(Exception):
    """Thrown into a session whose ``deadline`` passed."""


class SessionCancelled(Exception):
    """Thrown into a session still running when the run's grace period ends."""


class Machine(Protocol):
    """What the reactor drives: ``begin()`` starts it and gives the generator to drive;
    ``ended`` is told when that generator returns (``None``) or raises (the exception,
    which the machine raises again if it is not one of a session's); ``deadline`` is
    when the step under way times out (trio's clock; ``inf`` for never)."""

    deadline: float
    address: Address
    source: SourceAddress | None  # the local address to connect from; None: any

    def begin(self) -> Generator[Request, Any, None]: ...
    def ended(self, error: Exception | None) -> None: ...


class Feeder(Protocol):
    """Where new sessions come from: the run. ``due_at`` is when ``start_due`` next has
    something to do (``inf``: nothing until a session ends or the feeder is woken);
    ``session_ended`` frees a slot; ``finished`` once nothing more will start."""

    @property
    def finished(self) -> bool: ...

    def due_at(self) -> float: ...
    def start_due(self, now: float) -> None: ...
    def session_ended(self) -> None: ...
    def cut(self) -> None:
        """The run is being cut short: start nothing more; whatever waits is dropped."""


class Socket(Protocol):
    """What the reactor uses of a session's socket (a test's stand-in for the kernel
    takes its place)."""

    def send(self, data: bytes, /) -> int: ...
    def recv(self, size: int, /) -> bytes: ...
    def getsockopt(self, level: int, option: int, /) -> int: ...
    def close(self) -> None: ...


class _Owner(Protocol):
    """What a ``Link`` needs of its reactor (a test's stand-in takes its place)."""

    def now(self) -> float: ...

    def _want_write(self, link: Link, on: bool) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class Link:
    """One session's connection, as the reactor keeps it: what a session writes through.
    (A test's stand-in subclasses it; a session's writes still call the compiled method
    directly on the reactor's own.)"""

    __slots__ = (
        "fd",
        "gen",
        "inbox",
        "machine",
        "mark",
        "marked_at",
        "pending",
        "reactor",
        "resume",
        "sock",
        "waiting",
        "written_at",
    )

    def __init__(self, reactor: _Owner, machine: Machine) -> None:
        self.reactor = reactor
        self.machine = machine
        self.gen = machine.begin()
        # The generator's send, bound once: it is called for every reply of the session.
        self.resume: Callable[[Any], Request] = self.gen.send
        self.sock: Socket | None = None
        self.fd = -1
        self.waiting: _Request | None = None
        self.inbox: list[bytes] = []  # read while the session was not waiting to read
        self.pending = b""  # written, not yet taken by the kernel
        # When the send that handed over the last write's last byte began. Not when it
        # returned: on loopback a send delivers to the server, which may have answered
        # before the call is back, so a time taken after it would leave out part of the
        # server's work (a 2 KiB DATA end read 6 us against a C sink, half its MAIL).
        self.written_at = 0.0
        # A write's first part (a message's content carried before the next commands) can
        # be answered before the rest is taken: when its last byte went is noted apart.
        self.mark = 0  # bytes of ``pending`` still to go before the mark
        self.marked_at = 0.0  # when the send that handed over the mark's last byte began

    def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
        """Sends ``data``; what the kernel does not take now is sent as it makes room.
        True when all of it went at once. ``OSError`` when the connection is broken.
        ``mark``: the length of ``data``'s first part, whose end is noted in
        ``marked_at`` (when not all went at once): ``began``, the time the caller took
        just before this call, when this call's send took it."""
        if self.pending:
            if mark:
                self.mark = len(self.pending) + mark
            self.pending += data
            return False
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return True
        self.pending = data[sent:]
        if mark:
            if sent >= mark:
                self.marked_at = began
            else:
                self.mark = mark - sent
        self.reactor._want_write(self, True)
        return False

    def _send(self, data: bytes) -> int:
        """One send: what the kernel took."""
        if self.fd >= 0 and _FD_IO:
            return _write(self.fd, data)
        sock = self.sock  # a test's stand-in for the kernel: no descriptor
        assert sock is not None
        return sock.send(data)

    def _flush(self) -> None:
        began = self.reactor.now()
        try:
            sent = self._send(self.pending)
        except BlockingIOError:
            return
        self.pending = self.pending[sent:]
        if self.mark:
            self.mark = max(0, self.mark - sent)
            if not self.mark:
                self.marked_at = began
        if not self.pending:
            self.written_at = began
            self.reactor._want_write(self, False)


# Where a socket is a file descriptor, a session's sends and reads are the system's write
# and read on it (what send and recv do without flags): each a direct call, where the
# socket's own methods parse their Python arguments first, several times a message.
_FD_IO: Final = os.name == "posix"
_write: Final = os.write
_read: Final = os.read

# Linux tells a TCP connection's state in the first byte of its TCP_INFO: asking for that
# byte costs less than a peer name, which builds the address as text and a tuple.
_TCP_INFO = getattr(socket, "TCP_INFO", 0) if sys.platform.startswith("linux") else 0
_CONNECTED_STATES: Final = frozenset({1, 8})  # ESTABLISHED; CLOSE_WAIT (the peer spoke, closed)


def _has_peer(sock: socket.SocketType) -> bool:
    """The connection is made (the handshake is over)."""
    if _TCP_INFO:
        return sock.getsockopt(_TCP, _TCP_INFO, 1)[0] in _CONNECTED_STATES
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


# What trio's system clock reads; Final, a compiled build calls it from a C variable
# instead of looking up the module and its attribute on every read.
_perf_counter: Final = time.perf_counter


@mypyc_attr(allow_interpreted_subclasses=True)
class EngineClock:
    """What the reactor and its sessions read the time from (trio's clock), several
    times a message: ``read()`` is a direct C call in a compiled build, where calling a
    callable would be a Python call. Calling it reads it too."""

    def read(self) -> float:
        raise NotImplementedError

    def __call__(self) -> float:
        return self.read()


class _SystemClock(EngineClock):
    """trio's system clock: ``perf_counter`` plus the clock's fixed offset, the sum its
    ``current_time`` makes, made without a call of that Python method."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def read(self) -> float:
        return self.offset + _perf_counter()


class _CalledClock(EngineClock):
    """Any other clock: a mock clock's ``current_time``, a test's."""

    def __init__(self, current_time: Callable[[], float]) -> None:
        self.current_time = current_time

    def read(self) -> float:
        return self.current_time()


def engine_clock(clock: Callable[[], float]) -> EngineClock:
    """``clock`` (any callable that tells the time) as an ``EngineClock``."""
    return clock if isinstance(clock, EngineClock) else _CalledClock(clock)


def clock_reader(clock: trio.abc.Clock) -> EngineClock:
    """What reads trio's ``clock``: its ``current_time``, the same sum made without a
    Python call when it is trio's system clock (a mock clock is read as it is)."""
    offset = getattr(clock, "offset", None)
    if type(clock).__name__ == "SystemClock" and isinstance(offset, float):
        return _SystemClock(offset)
    return _CalledClock(clock.current_time)


class _Poller(Protocol):
    def fileno(self) -> int: ...
    def register(self, fd: int, mask: int) -> None: ...
    def modify(self, fd: int, mask: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def closing(self, fd: int) -> None: ...  # the socket is about to be closed
    def ready(self) -> Iterable[tuple[int, int]]: ...
    def close(self) -> None: ...


# Our own event bits: epoll's EPOLLIN, EPOLLOUT, EPOLLERR.
IN: Final = 1
OUT: Final = 4
ERR: Final = 8
# Linux makes a socket non-blocking as it creates it: one system call fewer per session.
# Not Final: a test takes SOCK_NONBLOCK away, as elsewhere, and a compiled build would
# keep a Final's value in a C variable that no test reaches.
SOCK_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
# The socket type itself, not the standard library's ``socket.socket`` subclass of it:
# that one runs a Python ``__init__`` and a Python ``close`` for every session, for
# files and context managers the reactor never uses. Not Final: a test puts a subclass
# in its place.
SOCKET_TYPE: type[socket.SocketType] = socket.SocketType
# What every connect uses, looked up once (a compiled build keeps them in C variables).
_TCP: Final = socket.IPPROTO_TCP
_NODELAY: Final = socket.TCP_NODELAY
_UNDER_WAY: Final = frozenset({0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK})


class _Epoll:
    """Linux: one epoll set, level-triggered."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fd: int, mask: int) -> None:
        self._epoll.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def closing(self, fd: int) -> None:
        """Nothing: closing a socket takes it out of the epoll set (its only descriptor)."""

    def ready(self) -> list[tuple[int, int]]:
        return self._epoll.poll(0, EVENTS_PER_TURN)

    def close(self) -> None:
        self._epoll.close()


class _Selector:
    """Elsewhere: the platform's best ``selectors`` selector."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        # Watched for nothing: out of the selector (some, kqueue's among them, refuse an
        # empty mask), back in when watched for something again.
        self._silent: set[int] = set()

    def fileno(self) -> int:
        return self._selector.fileno() if hasattr(self._selector, "fileno") else -1

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & IN else 0) | (
            selectors.EVENT_WRITE if mask & OUT else 0
        )

    def register(self, fd: int, mask: int) -> None:
        self._selector.register(fd, self._events(mask))

    def modify(self, fd: int, mask: int) -> None:
        events = self._events(mask)
        if not events:
            if fd not in self._silent:
                self._selector.unregister(fd)
                self._silent.add(fd)
        elif fd in self._silent:
            self._silent.discard(fd)
            self._selector.register(fd, events)
        else:
            self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if fd in self._silent:
            self._silent.discard(fd)
        else:
            self._selector.unregister(fd)

    def closing(self, fd: int) -> None:
        self.unregister(fd)  # the selector keeps its own map of what it watches

    def ready(self) -> list[tuple[int, int]]:
        return [
            (key.fd, (IN if events & selectors.EVENT_READ else 0) | (OUT if events & 2 else 0))
            for key, events in self._selector.select(0)
        ]

    def close(self) -> None:
        self._selector.close()


def _poller(prefer_epoll: bool) -> _Poller:
    if prefer_epoll and hasattr(select, "epoll"):
        return _Epoll()
    return _Selector()


class Reactor:
    """Drives sessions over their sockets until the feeder is finished and every
    session has ended (or been cancelled at ``cancel_at``)."""

    def __init__(
        self,
        feeder: Feeder,
        *,
        sweep_interval: float = 0.05,
        use_epoll: bool = True,
    ) -> None:
        self.feeder = feeder
        self.links: dict[int, Link] = {}  # by descriptor: sessions with a socket
        self.running: set[Link] = set()  # every session not ended, with a socket or not
        self.cancel_at = math.inf  # the grace period's end: sessions still running are cut
        self.sweep_interval = sweep_interval
        self._poller = _poller(use_epoll)
        self._sleepers: list[tuple[float, int, Link]] = []
        self._sleep_seq = 0
        self._next_sweep = 0.0
        self._wake: trio.CancelScope | None = None
        self._woken = False
        clock = trio.lowlevel.current_clock()
        self.clock = clock_reader(clock)
        # Waiting in select below trio's millisecond is only right on the real clock.
        self._fine = type(clock).__name__ == "SystemClock"

    def now(self) -> float:
        """The time on trio's clock."""
        return self.clock.read()

    # -- sessions -----------------------------------------------------------------

    def start(self, machine: Machine) -> None:
        """Starts a session now: runs it until it first waits."""
        link = Link(self, machine)
        self.running.add(link)
        self._advance(link, None)

    def wake(self) -> None:
        """Something changed outside (control, the feeder): look again at once."""
        self._woken = True
        if self._wake is not None:
            self._wake.cancel()

    def _advance(self, link: Link, value: Any, error: BaseException | None = None) -> None:
        """Resumes the session with ``value`` (or throws ``error`` into it) and serves
        what it asks for until it has to wait."""
        resume = link.resume
        while True:
            # The machine's own generator, resumed directly: no generator of the reactor's
            # in between, since every reply of every session comes through here.
            try:
                request = resume(value) if error is None else link.gen.throw(error)
            except StopIteration:
                self._finished(link, None)
                return
            except Exception as exc:  # what ended the session: the machine classifies it
                self._finished(link, exc)
                return
            error = None
            if request is READ:
                if link.inbox:
                    value = link.inbox.pop(0)
                    continue
                link.waiting = READ
                return
            if request is CONNECT:
                error = self._connect(link)
                if error is None:
                    if link.waiting is CONNECT:
                        return
                    value = link  # connected at once (loopback, most often)
                    continue
                value = None
                continue
            # A time to sleep until.
            link.waiting = None
            self._sleep_seq += 1
            assert not isinstance(request, _Request)
            heapq.heappush(self._sleepers, (float(request), self._sleep_seq, link))
            return

    def _connect(self, link: Link) -> OSError | None:
        address = link.machine.address
        try:
            sock = SOCKET_TYPE(address.family, SOCK_STREAM_NONBLOCK)
        except OSError as err:  # out of descriptors, most often
            return err
        try:
            if SOCK_STREAM_NONBLOCK == socket.SOCK_STREAM:
                sock.setblocking(False)  # no SOCK_NONBLOCK here
            # Commands are small and each waits for its reply: Nagle would only delay them.
            sock.setsockopt(_TCP, _NODELAY, 1)
            source = link.machine.source
            if source is not None:
                bind_source(sock, source)
            code = sock.connect_ex(address.sockaddr)
            if code not in _UNDER_WAY:
                raise OSError(code, os.strerror(code))  # errno picks the subclass
            fd = sock.fileno()
            # On loopback the handshake is over before connect returns: a peer name
            # says so, and the session goes on without waiting for writability.
            connected = code == 0 or _has_peer(sock)
            self._poller.register(fd, IN if connected else OUT)
        except OSError as err:
            sock.close()
            return err
        link.sock = sock
        link.fd = fd
        link.waiting = None if connected else CONNECT
        self.links[fd] = link
        return None

    def _connected(self, link: Link) -> None:
        sock = link.sock
        assert sock is not None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._advance(link, None, OSError(code, os.strerror(code)))
            return
        self._poller.modify(link.fd, IN)
        link.waiting = None
        self._advance(link, link)

    def _want_write(self, link: Link, on: bool) -> None:
        if link.fd >= 0 and link.waiting is not CONNECT:
            self._poller.modify(link.fd, IN | OUT if on else IN)

    def _finished(self, link: Link, error: Exception | None) -> None:
        """The session's generator returned or raised ``error``: the session is told (while
        its socket is still open, for a last word such as TLS's close_notify), then its
        socket is closed and its slot freed, even when telling it raises (a defect)."""
        try:
            link.machine.ended(error)
        finally:
            self._ended(link)

    def _ended(self, link: Link) -> None:
        self.running.discard(link)
        link.waiting = None
        sock = link.sock
        if sock is not None:
            del self.links[link.fd]
            # A plain try, not contextlib.suppress: no object and no calls, every session.
            try:  # noqa: SIM105
                self._poller.closing(link.fd)
            except (KeyError, OSError, ValueError):
                pass
            sock.close()
            link.sock = None
            link.fd = -1
        self.feeder.session_ended()

    def _readable(self, link: Link) -> None:
        size = FIRST_READ
        while True:
            try:
                if _FD_IO:
                    data = _read(link.fd, size)
                else:
                    sock = link.sock
                    assert sock is not None
                    data = sock.recv(size)
            except BlockingIOError:
                return
            except OSError as err:
                if link.waiting is READ:
                    link.waiting = None
                    self._advance(link, None, err)
                else:
                    self._broken(link)
                return
            if link.waiting is READ:
                link.waiting = None
                self._advance(link, data)
            else:
                # Bytes for a session that is busy or asleep: kept until it reads.
                link.inbox.append(data)
                if not data:
                    self._stop_reading(link)
            if len(data) < size or size == RECEIVE_SIZE or link.sock is None:
                return
            size = RECEIVE_SIZE  # the first read came back full: the rest in one large read

    def _stop_reading(self, link: Link) -> None:
        """End of file seen: level-triggered readability would repeat it forever."""
        self._poller.modify(link.fd, OUT if link.pending else 0)

    def _cancel_all(self) -> None:
        self.feeder.cut()
        for link in list(self.running):
            if link not in self.running:  # ended while others were told
                continue
            cancelled = SessionCancelled()
            try:
                link.gen.throw(cancelled)
            except StopIteration:
                self._finished(link, None)
            except Exception as exc:
                self._finished(link, exc)
            else:  # it went on: it is stopped all the same, and told why
                link.gen.close()
                self._finished(link, cancelled)
        self._sleepers.clear()

    def _sweep(self, now: float) -> None:
        """Throws ``StepTimeout`` into every session past its step's deadline."""
        late = [link for link in self.running if link.machine.deadline <= now]
        for link in late:
            if link in self.running:
                link.waiting = None
                self._advance(link, None, StepTimeout())

    def _wake_sleepers(self, now: float) -> None:
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= now:
            _, _, link = heapq.heappop(sleepers)
            if link in self.running:
                self._advance(link, None)

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Serves sessions until the feeder is finished and none is left."""
        feeder = self.feeder
        poller = self._poller
        links = self.links
        clock = self.clock
        last_yield = clock.read()
        self._next_sweep = last_yield + self.sweep_interval
        try:
            while True:
                self._woken = False
                t = clock.read()
                if t >= self.cancel_at:
                    self._cancel_all()
                due = feeder.due_at()
                if due <= t:
                    feeder.start_due(t)
                    due = feeder.due_at()
                if self._sleepers:
                    if self._sleepers[0][0] <= t:
                        self._wake_sleepers(t)
                    if self._sleepers:
                        due = min(due, self._sleepers[0][0])
                if t >= self._next_sweep:
                    self._sweep(t)
                    self._next_sweep = t + self.sweep_interval
                if not self.running and feeder.finished:
                    return
                events = poller.ready()
                # Something that falls due during this turn (a session to start, a
                # sleeper to wake) is not kept waiting for the rest of a long turn: what
                # is left stays ready (level-triggered) and comes back at the next look.
                # What is due already (more to start than a turn takes) waits for the
                # turn, as the sockets' work must go on.
                if due <= t:
                    due = math.inf
                served = 0
                for fd, mask in events:
                    served += 1
                    if not served % CHECK_DUE_EVERY and clock.read() >= due:
                        break
                    link = links.get(fd)
                    if link is None:
                        continue
                    if mask & OUT or (mask & ERR and link.waiting is CONNECT):
                        if link.waiting is CONNECT:
                            self._connected(link)
                            continue
                        try:
                            link._flush()
                        except OSError as err:
                            self._failed_write(link, err)
                            continue
                    if mask & ~OUT and link.sock is not None:
                        self._readable(link)
                if events:
                    if clock.read() - last_yield >= YIELD_EVERY:
                        await trio.lowlevel.checkpoint()
                        last_yield = clock.read()
                    continue
                if self._woken:
                    continue
                await self._wait(self._next_wake(t))
                last_yield = clock.read()
        finally:
            self._cancel_all()
            poller.close()

    def _failed_write(self, link: Link, err: OSError) -> None:
        """What waited to be written is dropped. Bytes that came before the failure (a last
        reply, sent just before a reset: what one read takes) are the session's before
        the error."""
        link.pending = b""
        sock = link.sock
        assert sock is not None
        try:
            data = sock.recv(RECEIVE_SIZE)
        except OSError:
            data = b""
        if data and link.waiting is READ:
            link.waiting = None
            self._advance(link, data)
            if link.sock is None:  # the session ended
                return
        elif data:
            link.inbox.append(data)
        if link.waiting is READ:
            link.waiting = None
            self._advance(link, None, err)
        else:
            self._broken(link)

    def _broken(self, link: Link) -> None:
        """The connection failed while its session was not waiting to read: it is told
        (end of file) when it reads, and the socket is no longer watched, since epoll
        reports an error on it every turn."""
        self._poller.unregister(link.fd)
        link.inbox.append(b"")

    def _next_wake(self, t: float) -> float:
        wake = min(self.feeder.due_at(), self._next_sweep, self.cancel_at)
        if self._sleepers:
            wake = min(wake, self._sleepers[0][0])
        return wake

    async def _wait(self, until: float) -> None:
        """Until a socket is ready, ``until`` passes, or ``wake()`` is called."""
        fd = self._poller.fileno()
        left = until - self.now()
        if self._fine and left < FINE_WAIT:
            if left > 0 and 0 <= fd < _SELECT_LIMIT:
                select.select([fd], [], [], left)
            await trio.lowlevel.checkpoint()
            return
        # trio's timers round up to the millisecond: wake a little early, then finish the
        # wait above with microsecond resolution.
        with trio.CancelScope(deadline=until - FINE_WAIT / 2 if self._fine else until) as scope:
            self._wake = scope
            try:
                if self._woken:
                    return
                if fd >= 0:
                    await trio.lowlevel.wait_readable(fd)
                else:
                    await trio.sleep(min(0.001, max(0.0, until - self.now())))
            finally:
                self._wake = None


__all__ = [
    "CONNECT",
    "READ",
    "EngineClock",
    "Feeder",
    "Link",
    "Machine",
    "Reactor",
    "Request",
    "SessionCancelled",
    "StepTimeout",
    "clock_reader",
    "engine_clock",
]
