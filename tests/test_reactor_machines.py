"""The reactor driving small machines of the test's own against loopback servers, in
milliseconds: what a session is resumed with (its link, the bytes read, end of file),
what is thrown into it (a refused connect, a reset, a timeout past its deadline, the
cut at the end of the grace period), sleeps woken in order, bytes kept while a session
sleeps, writes the kernel cannot take at once, and the feeder told of every end.
Then its parts alone: a link's bookkeeping of a write and its marked part (against a
stand-in socket), what falls due exactly on time under trio's MockClock, and how the
reactor waits (select() for the last stretch, trio's timers, or polling)."""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import select
import selectors
import socket
import struct
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest
import trio
import trio.testing

from smtpbench.engine import reactor as reactor_module
from smtpbench.engine.reactor import (
    CONNECT,
    EVENTS_PER_TURN,
    FINE_WAIT,
    READ,
    Link,
    Reactor,
    SessionCancelled,
    StepTimeout,
    clock_reader,
    engine_clock,
)
from smtpbench.engine.transport import Address
from tests.servers import LOOPBACK, free_port

Talk = Generator[Any, Any, None]
Handler = Callable[[trio.SocketStream], Awaitable[None]]
LIMIT = 20  # seconds: only to stop a hang


class Machine:
    """A session of the test's own: ``script`` is its generator, given the machine."""

    def __init__(
        self,
        port: int,
        script: Callable[[Machine], Talk],
        deadline: float = math.inf,
    ) -> None:
        self.address = Address(LOOPBACK, port, socket.AF_INET, (LOOPBACK, port))
        self.source = None
        self.deadline = deadline
        self.script = script
        self.seen: list[Any] = []  # what the machine noted
        self.reactor: Reactor | None = None
        self.endings: list[Exception | None] = []  # what ``ended`` was told
        self.lets_out = False  # True: an error its script raises is the test's to see

    def begin(self) -> Talk:
        return self.script(self)

    def ended(self, error: Exception | None) -> None:
        self.endings.append(error)
        if error is not None and not self.lets_out:
            raise error  # a script lets nothing out unless the test says so


class Feeder:
    """Starts every machine at once; notes each end and the cut."""

    def __init__(self, machines: list[Machine]) -> None:
        self.machines = machines
        self.started = False
        self.ended = 0
        self.cuts = 0
        self.reactor: Reactor | None = None

    @property
    def finished(self) -> bool:
        return self.started

    def due_at(self) -> float:
        return math.inf if self.started else 0.0

    def start_due(self, now: float) -> None:
        assert self.reactor is not None
        self.started = True
        for machine in self.machines:
            machine.reactor = self.reactor
            self.reactor.start(machine)

    def session_ended(self) -> None:
        self.ended += 1

    def cut(self) -> None:
        self.cuts += 1


async def drive(
    machines: list[Machine], *, use_epoll: bool = True, cancel_after: float | None = None
) -> Feeder:
    feeder = Feeder(machines)
    reactor = Reactor(feeder, sweep_interval=0.005, use_epoll=use_epoll)
    feeder.reactor = reactor
    if cancel_after is not None:
        reactor.cancel_at = reactor.now() + cancel_after
    with trio.fail_after(LIMIT):
        await reactor.run()
    return feeder


async def serving(nursery: trio.Nursery, handler: Handler) -> int:
    serve = functools.partial(trio.serve_tcp, handler, 0, host=LOOPBACK)
    listeners = await nursery.start(serve)
    return listeners[0].socket.getsockname()[1]


async def read_until(stream: trio.SocketStream, end: bytes) -> bytes:
    data = bytearray()
    while not data.endswith(end):
        chunk = await stream.receive_some(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def idle(m: Machine) -> Talk:
    """A session that ends at once, for a link whose writes are driven by hand."""
    return
    yield


def read_all(first: bytes, end: bytes) -> Generator[Any, Any, bytes]:
    data = first
    while not data.endswith(end):
        chunk = yield READ
        assert chunk, "end of file before " + repr(end)
        data += chunk
    return data


pollers = pytest.mark.parametrize("use_epoll", [True, False], ids=["epoll", "selector"])


@pollers
async def test_a_session_is_given_its_link_the_bytes_read_and_end_of_file(
    use_epoll: bool,
) -> None:
    heard: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 hi\r\n")
        heard.append(await read_until(stream, b"QUIT\r\n"))
        await stream.send_all(b"221 bye\r\n")
        await stream.aclose()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        m.seen.append(isinstance(link, Link) and link.sock is not None)
        m.seen.append((yield from read_all(b"", b"\r\n")))
        m.seen.append(link.write(b"QUIT\r\n"))  # a few bytes go at once
        m.seen.append((yield from read_all(b"", b"\r\n")))
        m.seen.append((yield READ))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = await drive([machine], use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    assert machine.seen == [True, b"220 hi\r\n", True, b"221 bye\r\n", b""]
    assert heard == [b"QUIT\r\n"]
    assert feeder.ended == 1 and feeder.cuts == 1  # the cut at the end stops nothing more


async def test_a_session_that_ends_has_its_connection_closed() -> None:
    after: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 hi\r\n")
        after.append(await stream.receive_some(100))  # end of file: the session ended

    def script(m: Machine) -> Talk:
        yield CONNECT
        yield from read_all(b"", b"\r\n")

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = await drive([machine])
        with trio.fail_after(LIMIT):
            while not after:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert after == [b""] and feeder.ended == 1


@pollers
async def test_what_the_kernel_cannot_take_at_once_goes_out_whole_and_in_order(
    use_epoll: bool,
) -> None:
    big = bytes(range(256)) * 32768  # 8 MiB: more than any socket buffer takes at once
    received: list[int] = []

    async def server(stream: trio.SocketStream) -> None:
        data = await read_until(stream, b"tail\r\n")
        received.append(len(data))
        received.append(data == big + b"tail\r\n")
        await stream.send_all(b"250 got it\r\n")

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        began = reactor.now()
        m.seen.append(link.write(big))  # False: some of it waits for room
        m.seen.append(len(link.pending) > 0)
        m.seen.append(link.write(b"tail\r\n"))  # False: queued behind what waits
        reply = yield from read_all(b"", b"\r\n")
        m.seen.append(reply)
        m.seen.append(link.pending)
        # The last byte was handed to the kernel after the write began, before the reply.
        m.seen.append(began < link.written_at <= reactor.now())

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    assert machine.seen == [False, True, False, b"250 got it\r\n", b"", True]
    assert received == [len(big) + 6, True]


async def test_sleepers_wake_at_their_times_in_order() -> None:
    woke: list[tuple[int, float, float]] = []

    def sleeper(number: int, after: float) -> Callable[[Machine], Talk]:
        def script(m: Machine) -> Talk:
            reactor = m.reactor
            assert reactor is not None
            until = reactor.now() + after
            yield until
            woke.append((number, until, reactor.now()))

        return script

    machines = [Machine(1, sleeper(n, after)) for n, after in enumerate([0.06, 0.02, 0.04])]
    feeder = await drive(machines)
    assert [number for number, _, _ in woke] == [1, 2, 0]
    assert all(now >= until for _, until, now in woke)
    assert feeder.ended == 3


async def test_bytes_and_end_of_file_that_come_while_a_session_sleeps_are_kept() -> None:
    async def server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 hi\r\n")
        await stream.aclose()

    def script(m: Machine) -> Talk:
        yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        # Long enough for the greeting and the close to arrive while asleep (a sweep or
        # two of the reactor sees the socket readable meanwhile).
        yield reactor.now() + 0.1
        data = yield READ
        m.seen.append(data)
        m.seen.append((yield READ))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine])
        nursery.cancel_scope.cancel()
    assert machine.seen == [b"220 hi\r\n", b""]


def _reset(stream: trio.SocketStream) -> None:
    # Close with a zero linger time: the peer gets a reset, not an end of file.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


def _reset_socket(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _say_then_reset(peer: socket.socket, data: bytes, link: Link) -> None:
    """The peer sends ``data`` and resets the connection; returns once both are in at
    ``link``'s socket, before the reactor looks at it."""
    peer.sendall(data)
    _reset_socket(peer)
    arrived = select.poll()
    arrived.register(link.sock, 0)  # an error or a hang-up is always reported
    assert arrived.poll(LIMIT * 1000)


@pollers
@pytest.mark.parametrize(
    "size",
    [
        reactor_module.FIRST_READ - 1,
        reactor_module.FIRST_READ,
        reactor_module.FIRST_READ + 1,
        200_000,
    ],
    ids=["under", "exactly", "over", "large"],
)
async def test_what_the_server_sends_reaches_the_session_whole_whatever_its_size(
    use_epoll: bool, size: int
) -> None:
    # A socket is read first for a small size, and once more, for a large one, only when
    # that read came back full: every byte arrives, in order, whatever the reply's size.
    reply = (b"250-" + b"x" * size)[: size - 2] + b"\r\n"

    async def server(stream: trio.SocketStream) -> None:
        await stream.send_all(reply)
        await read_until(stream, b"QUIT\r\n")

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        got = yield from read_all(b"", b"\r\n")
        m.seen.append(got)
        link.write(b"QUIT\r\n")

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    assert machine.seen == [reply]


async def test_a_reset_after_a_full_first_read_comes_after_the_bytes_before_it() -> None:
    # The bytes of the first read are the session's before the reset that the next read
    # finds: the reply is there, then the error (not an end of file in its place).
    head = b"250 " + b"y" * (reactor_module.FIRST_READ - 6) + b"\r\n"
    assert len(head) == reactor_module.FIRST_READ

    async def server(stream: trio.SocketStream) -> None:
        await read_until(stream, b"\r\n")
        await stream.send_all(head)
        _reset(stream)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        link.write(b"HELO x\r\n")
        m.seen.append((yield from read_all(b"", b"\r\n")))
        try:
            m.seen.append((yield READ))
        except OSError as err:
            m.seen.append(type(err))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine])
        nursery.cancel_scope.cancel()
    assert machine.seen == [head, ConnectionResetError]


async def test_a_reset_is_thrown_into_a_session_waiting_to_read() -> None:
    async def server(stream: trio.SocketStream) -> None:
        await read_until(stream, b"\r\n")
        _reset(stream)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        link.write(b"HELO x\r\n")
        try:
            yield READ
        except OSError as err:
            m.seen.append(type(err))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = await drive([machine])
        nursery.cancel_scope.cancel()
    assert machine.seen == [ConnectionResetError] and feeder.ended == 1


@pollers
async def test_a_reset_while_a_session_sleeps_is_an_end_of_file_when_it_reads(
    use_epoll: bool,
) -> None:
    async def server(stream: trio.SocketStream) -> None:
        await read_until(stream, b"\r\n")
        _reset(stream)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        link.write(b"HELO x\r\n")
        yield reactor.now() + 0.1
        m.seen.append((yield READ))
        m.seen.append(link.inbox)  # told once

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        # Unwatched once broken, and again as the session ends: neither is an error.
        await drive([machine], use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    assert machine.seen == [b"", []]


async def test_a_refused_connection_is_thrown_into_the_session() -> None:
    def script(m: Machine) -> Talk:
        try:
            yield CONNECT
        except OSError as err:
            m.seen.append(type(err))

    machine = Machine(free_port(), script)
    feeder = await drive([machine])
    assert machine.seen == [ConnectionRefusedError] and feeder.ended == 1


async def test_a_session_past_its_deadline_gets_a_timeout_and_others_do_not() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    def waiting(m: Machine) -> Talk:
        yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        m.deadline = reactor.now() + 0.03
        try:
            yield READ
        except StepTimeout:
            m.seen.append(reactor.now() >= m.deadline)

    def patient(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        yield reactor.now() + 0.1  # sleeps through several sweeps; no deadline
        m.seen.append("woke")

    async with trio.open_nursery() as nursery:
        port = await serving(nursery, silent)
        late, calm = Machine(port, waiting), Machine(port, patient)
        feeder = await drive([late, calm])
        nursery.cancel_scope.cancel()
    assert late.seen == [True] and calm.seen == ["woke"] and feeder.ended == 2


async def test_sessions_still_running_at_the_cut_are_cancelled_where_they_wait() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    def reading(m: Machine) -> Talk:
        yield CONNECT
        try:
            yield READ
        except SessionCancelled:
            m.seen.append("cancelled")

    def sleeping(m: Machine) -> Talk:
        try:
            yield math.inf
        except SessionCancelled:
            m.seen.append("cancelled")
            yield READ  # a session that will not stop is closed all the same

    async with trio.open_nursery() as nursery:
        port = await serving(nursery, silent)
        machines = [Machine(port, reading), Machine(port, sleeping)]
        machines[1].lets_out = True  # it is told it was cancelled: not a defect here
        feeder = await drive(machines, cancel_after=0.05)
        nursery.cancel_scope.cancel()
    assert [m.seen for m in machines] == [["cancelled"], ["cancelled"]]
    assert feeder.ended == 2 and feeder.cuts >= 1
    # The first returned; the second went on, was closed, and is told it was cancelled.
    assert machines[0].endings == [None]
    assert [type(e) for e in machines[1].endings] == [SessionCancelled]


async def test_a_machine_is_told_what_its_generator_raised_and_a_defect_stops_the_run() -> None:
    async def greeter(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 hi\r\n")
        await trio.sleep_forever()

    def raising(m: Machine) -> Talk:
        yield CONNECT
        yield READ
        raise ConnectionResetError("told to the machine")

    async with trio.open_nursery() as nursery:
        port = await serving(nursery, greeter)
        told = Machine(port, raising)
        told.lets_out = True  # this machine takes the error (as a session does)
        feeder = await drive([told])
        assert [type(e) for e in told.endings] == [ConnectionResetError]
        assert feeder.ended == 1
        defect = Machine(port, raising)  # this one raises it again: the run stops with it
        with pytest.raises(ConnectionResetError, match="told to the machine"):
            await drive([defect])
        nursery.cancel_scope.cancel()


def test_requests_are_named_as_written() -> None:
    assert (repr(CONNECT), repr(READ)) == ("CONNECT", "READ")


async def test_a_connection_the_server_takes_later_resumes_the_session() -> None:
    # A listener with a full queue drops new SYNs: the connect is still under way when
    # connect() returns, and completes when the client sends its SYN again (after about
    # a second) once the queue has room.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection((LOOPBACK, port))

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        m.seen.append(isinstance(link, Link))
        link.write(b"hello\r\n")
        m.seen.append((yield READ))

    async def server() -> None:
        await trio.sleep(0.2)  # the session's connect is waiting by now
        first, _ = listener.accept()
        first.close()
        filler.close()
        second, _ = await trio.to_thread.run_sync(listener.accept)
        with second:
            got = b""
            while not got.endswith(b"\r\n"):
                got += await trio.to_thread.run_sync(second.recv, 100)
            second.sendall(b"250 " + got)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            machine = Machine(port, script)
            feeder = await drive([machine])
    finally:
        listener.close()
        filler.close()
    assert machine.seen == [True, b"250 hello\r\n"] and feeder.ended == 1


async def test_once_a_write_is_done_the_socket_is_watched_for_reading_only() -> None:
    big = b"x" * (8 << 20)

    async def server(stream: trio.SocketStream) -> None:
        await read_until(stream, b"\r\n")
        await stream.send_all(b"250 ok\r\n")

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        m.seen.append(link.write(big + b"\r\n"))
        m.seen.append(watched(reactor, link))  # reading, and writing what waits
        yield from read_all(b"", b"\r\n")
        m.seen.append(watched(reactor, link))  # all written: reading only

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=False)
        nursery.cancel_scope.cancel()
    both = selectors.EVENT_READ | selectors.EVENT_WRITE
    assert machine.seen == [False, both, selectors.EVENT_READ]


def watched(reactor: Reactor, link: Link) -> int:
    """What the selector fallback watches the link's socket for (0: nothing, and then the
    socket is out of the selector, since some selectors refuse an empty mask)."""
    key = reactor._poller._selector.get_map().get(link.fd)  # type: ignore[attr-defined]
    return 0 if key is None else int(key.events)


async def test_end_of_file_while_asleep_stops_watching_the_socket() -> None:
    async def server(stream: trio.SocketStream) -> None:
        await stream.aclose()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        yield reactor.now() + 0.1
        m.seen.append(watched(reactor, link))  # nothing: end of file would repeat forever
        m.seen.append((yield READ))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=False)
        nursery.cancel_scope.cancel()
    assert machine.seen == [0, b""]


@pytest.mark.parametrize("asleep", [False, True], ids=["reading", "asleep"])
async def test_a_write_the_peer_breaks_is_told_to_the_session(asleep: bool) -> None:
    big = b"x" * (32 << 20)  # never all taken before the reset

    async def server(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        _reset(stream)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        m.seen.append(link.write(big))
        if asleep:
            yield reactor.now() + 0.2
        try:
            m.seen.append((yield READ))
        except OSError as err:
            m.seen.append(isinstance(err, ConnectionError))  # reset, or a broken pipe
        m.seen.append(link.pending)  # what was waiting is dropped
        m.seen.append(link.inbox)  # and the broken connection told once

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = await drive([machine])
        nursery.cancel_scope.cancel()
    # Waiting to read: the error itself. Asleep: end of file when it reads.
    assert machine.seen == [False, b"" if asleep else True, b"", []] and feeder.ended == 1


async def test_a_reactor_waiting_for_nothing_is_woken_to_start_sessions() -> None:
    started: list[float] = []

    class Later(Feeder):
        go = False

        def due_at(self) -> float:
            return 0.0 if self.go and not self.started else math.inf

    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        started.append(reactor.now())
        return
        yield

    feeder = Later([Machine(1, script)])
    # Sweeps a day apart: nothing but wake() can end the wait.
    reactor = Reactor(feeder, sweep_interval=86400.0)
    feeder.reactor = reactor
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reactor.run)
            await trio.sleep(0.05)
            feeder.go = True
            reactor.wake()
    assert len(started) == 1 and feeder.ended == 1


async def test_what_waits_to_be_written_still_goes_after_the_server_stops_sending() -> None:
    big = b"y" * (8 << 20)
    received: list[int] = []

    async def server(stream: trio.SocketStream) -> None:
        await stream.send_eof()  # the server says no more, but still reads
        total = 0
        while total < len(big):
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        received.append(total)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        m.seen.append(link.write(big))
        yield reactor.now() + 0.1  # the end of file comes meanwhile
        m.seen.append((yield READ))
        for _ in range(2000):  # the rest of the write goes out while the session waits
            if not link.pending:
                break
            yield reactor.now() + 0.005
        m.seen.append(link.pending)

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine])
        with trio.fail_after(LIMIT):
            while not received:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert machine.seen == [False, b"", b""] and received == [len(big)]


async def test_a_connection_on_descriptor_0_is_written_like_any_other() -> None:
    # A daemon with standard input closed: the first socket it opens is descriptor 0.
    big = b"z" * (8 << 20)
    saved = os.dup(0)

    async def server(stream: trio.SocketStream) -> None:
        data = await read_until(stream, b"\r\n")
        await stream.send_all(b"250 %d\r\n" % len(data))

    def script(m: Machine) -> Talk:
        os.close(0)
        link = yield CONNECT
        m.seen.append(link.fd)
        m.seen.append(link.write(big + b"\r\n"))
        m.seen.append((yield from read_all(b"", b"\r\n")))

    try:
        async with trio.open_nursery() as nursery:
            machine = Machine(await serving(nursery, server), script)
            await drive([machine])
            nursery.cancel_scope.cancel()
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert machine.seen == [0, False, b"250 %d\r\n" % (len(big) + 2)]


async def test_a_refused_connection_says_why() -> None:
    def script(m: Machine) -> Talk:
        try:
            yield CONNECT
        except OSError as err:
            m.seen.append(str(err))

    machine = Machine(free_port(), script)
    await drive([machine])
    refused = errno.ECONNREFUSED
    assert machine.seen == [f"[Errno {refused}] {os.strerror(refused)}"]


@pollers
async def test_the_end_of_a_write_is_when_the_kernel_took_its_last_byte(use_epoll: bool) -> None:
    # The server answers 50 ms after it has every byte: the write ended before that.
    big = b"w" * (8 << 20)

    async def server(stream: trio.SocketStream) -> None:
        await read_until(stream, b"\r\n")
        await trio.sleep(0.05)
        await stream.send_all(b"250 ok\r\n")

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        link.write(big + b"\r\n")
        yield from read_all(b"", b"\r\n")
        m.seen.append(reactor.now() - link.written_at)

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    assert machine.seen[0] >= 0.05


async def test_the_selector_fallback_waits_on_its_descriptor() -> None:
    # Sweeps a day apart and nothing else due: only the socket can wake the reactor.
    async def server(stream: trio.SocketStream) -> None:
        await trio.sleep(0.05)
        await stream.send_all(b"220 hi\r\n")

    def script(m: Machine) -> Talk:
        yield CONNECT
        m.seen.append((yield from read_all(b"", b"\r\n")))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = Feeder([machine])
        reactor = Reactor(feeder, sweep_interval=86400.0, use_epoll=False)
        feeder.reactor = reactor
        with trio.fail_after(5):
            await reactor.run()
        nursery.cancel_scope.cancel()
    assert machine.seen == [b"220 hi\r\n"]


@pollers
async def test_a_descriptor_closed_is_forgotten_so_a_later_connection_may_reuse_it(
    use_epoll: bool,
) -> None:
    async def server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 hi\r\n")
        await trio.sleep_forever()

    def first(m: Machine) -> Talk:
        link = yield CONNECT
        m.seen.append(link.fd)
        yield from read_all(b"", b"\r\n")

    def later(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        yield reactor.now() + 0.1  # the first session has ended and closed its socket
        link = yield CONNECT
        m.seen.append(link.fd)
        m.seen.append((yield from read_all(b"", b"\r\n")))

    async with trio.open_nursery() as nursery:
        port = await serving(nursery, server)
        machines = [Machine(port, first), Machine(port, later)]
        await drive(machines, use_epoll=use_epoll)
        nursery.cancel_scope.cancel()
    # The lowest free descriptor is taken again.
    assert machines[1].seen == [machines[0].seen[0], b"220 hi\r\n"]


async def test_a_selector_without_a_descriptor_of_its_own_is_polled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # select() has no descriptor to wait on (unlike epoll, poll, kqueue).
    monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)

    async def server(stream: trio.SocketStream) -> None:
        await trio.sleep(0.05)
        await stream.send_all(b"220 hi\r\n")

    def script(m: Machine) -> Talk:
        yield CONNECT
        m.seen.append((yield from read_all(b"", b"\r\n")))

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        feeder = Feeder([machine])
        reactor = Reactor(feeder, sweep_interval=86400.0, use_epoll=False)
        assert reactor._poller.fileno() == -1
        feeder.reactor = reactor
        with trio.fail_after(5):
            await reactor.run()
        nursery.cancel_scope.cancel()
    assert machine.seen == [b"220 hi\r\n"]


async def test_a_session_connects_from_its_source_address() -> None:
    peers: list[str] = []

    async def server(stream: trio.SocketStream) -> None:
        peers.append(stream.socket.getpeername()[0])
        await stream.send_all(b"220 hi\r\n")

    def script(m: Machine) -> Talk:
        yield CONNECT
        yield from read_all(b"", b"\r\n")

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        machine.source = ("127.0.0.2", 0)
        await drive([machine])
        nursery.cancel_scope.cancel()
    assert peers == ["127.0.0.2"]


async def test_a_connect_refused_at_once_by_the_kernel_says_why() -> None:
    # A TCP connection to the broadcast address is refused before any packet goes.
    def script(m: Machine) -> Talk:
        try:
            yield CONNECT
        except OSError as err:
            m.seen.append((err.errno, str(err)))

    machine = Machine(25, script)
    machine.address = Address("255.255.255.255", 25, socket.AF_INET, ("255.255.255.255", 25))
    await drive([machine])
    ((number, text),) = machine.seen
    assert number is not None and text == f"[Errno {number}] {os.strerror(number)}"


async def test_a_session_due_later_is_started_with_nothing_else_to_wake_for() -> None:
    started: list[float] = []

    class Later(Feeder):
        def due_at(self) -> float:
            assert self.reactor is not None
            return math.inf if self.started else self.first + 0.05

    def script(m: Machine) -> Talk:
        assert m.reactor is not None
        started.append(m.reactor.now())
        return
        yield

    feeder = Later([Machine(1, script)])
    reactor = Reactor(feeder, sweep_interval=86400.0)  # sweeps a day apart
    feeder.reactor = reactor
    feeder.first = reactor.now()  # type: ignore[attr-defined]
    with trio.fail_after(5):
        await reactor.run()
    assert len(started) == 1 and started[0] >= feeder.first + 0.05  # type: ignore[attr-defined]


async def test_a_timeout_and_the_cut_come_with_nothing_else_to_wake_for() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    def waiting(m: Machine) -> Talk:
        yield CONNECT
        assert m.reactor is not None
        m.deadline = m.reactor.now() + 0.03
        try:
            yield READ
        except StepTimeout:
            m.seen.append("timeout")

    def reading(m: Machine) -> Talk:
        yield CONNECT
        try:
            yield READ
        except SessionCancelled:
            m.seen.append("cancelled")

    async with trio.open_nursery() as nursery:
        port = await serving(nursery, silent)
        late = Machine(port, waiting)
        with trio.fail_after(5):
            await drive([late])
        assert late.seen == ["timeout"]
        cut = Machine(port, reading)
        feeder = Feeder([cut])
        reactor = Reactor(feeder, sweep_interval=86400.0)
        feeder.reactor = reactor
        reactor.cancel_at = reactor.now() + 0.05
        with trio.fail_after(5):
            await reactor.run()
        assert cut.seen == ["cancelled"]
        nursery.cancel_scope.cancel()


async def test_wake_while_the_reactor_is_busy_is_harmless() -> None:
    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        yield reactor.now() + 0.02  # the reactor has waited at least once
        reactor.wake()  # as control may, while the reactor is not waiting
        yield reactor.now() + 0.01  # nothing else is ready in this turn: the run goes on
        m.seen.append("woke")

    machine = Machine(1, script)
    feeder = await drive([machine])
    assert machine.seen == ["woke"] and feeder.ended == 1


@pollers
async def test_bytes_that_came_before_a_reset_are_read_before_the_reset_is_told(
    use_epoll: bool,
) -> None:
    # epoll reports the reset (an error) while the greeting before it is still unread.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        peer, _ = listener.accept()
        _say_then_reset(peer, b"220 hi\r\n", link)
        m.seen.append((yield READ))
        try:
            yield READ
        except OSError as err:
            m.seen.append(type(err))

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        feeder = await drive([machine], use_epoll=use_epoll)
    assert machine.seen == [b"220 hi\r\n", ConnectionResetError] and feeder.ended == 1


@pollers
async def test_end_of_file_is_not_read_again_at_every_turn_while_a_write_goes_out(
    use_epoll: bool,
) -> None:
    big = b"v" * (32 << 20)  # far more than the socket buffers hold
    go = trio.Event()
    received: list[int] = []

    async def server(stream: trio.SocketStream) -> None:
        await stream.send_eof()
        await go.wait()  # reads nothing until the session has seen the end of file
        total = 0
        while total < len(big):
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        received.append(total)

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        m.seen.append(link.write(big))
        while not link.inbox:  # asleep while the end of file comes
            yield reactor.now() + 0.001
        m.seen.append((yield READ))
        go.set()
        while link.pending:  # the rest goes out in many turns
            yield reactor.now() + 0.001
        # Once the write is done the socket is watched for reading again, which shows
        # the end of file once more: at most one, not one per turn of the write.
        m.seen.append(link.inbox.count(b"") <= 1 and len(link.inbox) <= 1)

    async with trio.open_nursery() as nursery:
        machine = Machine(await serving(nursery, server), script)
        await drive([machine], use_epoll=use_epoll)
        with trio.fail_after(LIMIT):
            while not received:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert machine.seen == [False, b"", True] and received == [len(big)]


async def test_sleepers_due_at_the_same_time_wake_in_the_order_they_fell_asleep() -> None:
    woke: list[int] = []
    until: list[float] = []

    def sleeper(number: int) -> Callable[[Machine], Talk]:
        def script(m: Machine) -> Talk:
            reactor = m.reactor
            assert reactor is not None
            if not until:
                until.append(reactor.now() + 0.01)
            yield until[0]
            woke.append(number)

        return script

    feeder = await drive([Machine(1, sleeper(n)) for n in range(5)])
    assert woke == [0, 1, 2, 3, 4] and feeder.ended == 5


async def test_wake_before_the_reactor_runs_is_harmless() -> None:
    def script(m: Machine) -> Talk:
        m.seen.append("ran")
        return
        yield

    machine = Machine(1, script)
    feeder = Feeder([machine])
    reactor = Reactor(feeder, sweep_interval=0.005)
    feeder.reactor = reactor
    reactor.wake()  # as control may, before the run has begun
    with trio.fail_after(LIMIT):
        await reactor.run()
    assert machine.seen == ["ran"] and feeder.ended == 1


def _full(sock: socket.socket) -> None:
    """Fills ``sock``'s send buffer: the kernel takes nothing more until the peer reads."""
    sock.setblocking(False)
    for size in (65536, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.send(b"f" * size)


async def test_a_write_a_full_socket_refuses_is_kept_whole() -> None:
    left, right = socket.socketpair()
    with left, right:
        _full(left)
        link = Link(Reactor(Feeder([])), Machine(1, idle))
        link.sock = left  # no descriptor in the poller: nothing else is watched
        assert link.write(b"MAIL FROM:<a@b>\r\n") is False
        assert link.pending == b"MAIL FROM:<a@b>\r\n"
        assert link.write(b"RCPT TO:<c@d>\r\n") is False  # queued behind it
        assert link.pending == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"


async def test_a_connect_the_kernel_completes_at_once_goes_on_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on a kernel whose non-blocking connect is done before it returns (0, not
    # EINPROGRESS): the session is resumed with its link at once.
    class AtOnce(socket.SocketType):
        def connect_ex(self, address: Any) -> int:
            self.setblocking(True)
            try:
                return super().connect_ex(address)
            finally:
                self.setblocking(False)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        m.seen.append(isinstance(link, Link))
        peer, _ = listener.accept()
        with peer:
            peer.sendall(b"220 hi\r\n")
            m.seen.append((yield from read_all(b"", b"\r\n")))

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        monkeypatch.setattr(reactor_module, "SOCKET_TYPE", AtOnce)
        feeder = await drive([machine])
    assert machine.seen == [True, b"220 hi\r\n"] and feeder.ended == 1


class Turns(Feeder):
    """Starts every machine at ``start_at``, and fails a reactor that spins: one that
    wakes over and over with nothing done, as it would if something due exactly now were
    left for a later turn under a clock that stands still while it works."""

    def __init__(self, machines: list[Machine], start_at: float = 0.0) -> None:
        super().__init__(machines)
        self.start_at = start_at
        self.asked = 0

    def due_at(self) -> float:
        self.asked += 1  # two questions a turn
        assert self.asked < 10_000, "the reactor spins"
        return math.inf if self.started else self.start_at


async def run_turns(feeder: Turns, sweep_interval: float, cancel_at: float = math.inf) -> None:
    reactor = Reactor(feeder, sweep_interval=sweep_interval)
    feeder.reactor = reactor
    reactor.cancel_at = cancel_at
    with trio.fail_after(LIMIT):
        await reactor.run()


# trio's MockClock (autojump_clock) stands still while the reactor works and jumps to the
# next due time when it waits: a due time is met exactly, and the times are exact.


async def test_a_session_due_at_a_time_starts_exactly_then(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[float] = []

    def script(m: Machine) -> Talk:
        assert m.reactor is not None
        started.append(m.reactor.now())
        return
        yield

    feeder = Turns([Machine(1, script)], start_at=trio.current_time() + 0.02)
    await run_turns(feeder, sweep_interval=86400.0)
    assert started == [feeder.start_at] and feeder.ended == 1


async def test_a_sleeper_wakes_exactly_at_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        until = reactor.now() + 0.03
        yield until
        m.seen.append(reactor.now() - until)

    machine = Machine(1, script)
    await run_turns(Turns([machine]), sweep_interval=86400.0)
    assert machine.seen == [0.0]


async def test_a_step_whose_deadline_is_a_sweeps_time_times_out_at_that_sweep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        m.deadline = reactor.now() + 0.05  # the first sweep's time: started with the run
        try:
            yield math.inf
        except StepTimeout:
            m.seen.append(reactor.now() - m.deadline)

    def patient(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        until = reactor.now() + 0.12  # the sweeps go on meanwhile, an interval apart
        yield until
        m.seen.append(reactor.now() - until)

    machines = [Machine(1, script), Machine(1, patient)]
    await run_turns(Turns(machines), sweep_interval=0.05)
    assert [m.seen for m in machines] == [[0.0], [0.0]]


async def test_the_cut_comes_exactly_at_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cut_at = trio.current_time() + 0.04

    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        try:
            yield math.inf
        except SessionCancelled:
            m.seen.append(reactor.now())

    machine = Machine(1, script)
    feeder = Turns([machine])
    await run_turns(feeder, sweep_interval=86400.0, cancel_at=cut_at)
    assert machine.seen == [cut_at] and feeder.cuts >= 1


async def test_by_default_a_timeout_is_noticed_within_50_ms(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(m: Machine) -> Talk:
        reactor = m.reactor
        assert reactor is not None
        m.deadline = reactor.now() + 0.001
        try:
            yield math.inf
        except StepTimeout:
            m.seen.append(reactor.now() - m.deadline)

    machine = Machine(1, script)
    feeder = Feeder([machine])
    reactor = Reactor(feeder)  # the default sweep interval
    feeder.reactor = reactor
    with trio.fail_after(LIMIT):
        await reactor.run()
    assert len(machine.seen) == 1 and 0 <= machine.seen[0] <= 0.05


class Waits:
    """Stands in for what the reactor waits with (select(), and trio's wait for a
    descriptor and sleep): notes each call, with the deadline trio's would end at."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, Any, float]] = []
        monkeypatch.setattr(select, "select", self.select)
        monkeypatch.setattr(trio.lowlevel, "wait_readable", self.wait_readable)
        monkeypatch.setattr(trio, "sleep", self.sleep)

    def select(self, r: list[int], w: list[int], x: list[int], timeout: float) -> tuple:
        self.calls.append(("select", r, timeout))
        return [], [], []

    async def wait_readable(self, fd: int) -> None:
        self.calls.append(("wait_readable", fd, trio.current_effective_deadline()))

    async def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds, trio.current_effective_deadline()))


def still_reactor(use_epoll: bool = True) -> tuple[Reactor, float]:
    """A reactor whose clock stands at a time of trio's clock still to come."""
    reactor = Reactor(Feeder([]), use_epoll=use_epoll)
    at = trio.current_time() + 100.0
    reactor.clock = engine_clock(lambda: at)
    return reactor, at


async def test_the_last_stretch_of_a_wait_is_done_in_select_on_the_pollers_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # trio's timers round up to the millisecond: under 2 ms, select() waits what is left.
    waits = Waits(monkeypatch)
    reactor, at = still_reactor()
    until = at + 0.0015
    await reactor._wait(until)
    assert waits.calls == [("select", [reactor._poller.fileno()], until - at)]
    await reactor._wait(at)  # nothing left to wait: no system call
    assert len(waits.calls) == 1


async def test_a_longer_wait_ends_half_a_fine_wait_early_for_select_to_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = Waits(monkeypatch)
    reactor, at = still_reactor()
    fd = reactor._poller.fileno()
    await reactor._wait(at + 10.0)
    assert waits.calls == [("wait_readable", fd, at + 10.0 - FINE_WAIT / 2)]
    # Exactly the fine wait left: trio's timer, not select().
    waits.calls.clear()
    reactor.clock = engine_clock(lambda: 0.0)
    await reactor._wait(FINE_WAIT)
    assert [call[:2] for call in waits.calls] == [("wait_readable", fd)]


async def test_under_a_mock_clock_a_wait_ends_exactly_at_its_time(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No select() below the millisecond: the mock clock's times are exact already.
    waits = Waits(monkeypatch)
    reactor = Reactor(Feeder([]))
    fd = reactor._poller.fileno()
    until = reactor.now() + FINE_WAIT / 4
    await reactor._wait(until)
    assert waits.calls == [("wait_readable", fd, until)]


async def test_a_poller_on_descriptor_0_is_waited_on_like_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A daemon with standard input closed: the epoll set it opens first is descriptor 0.
    saved = os.dup(0)
    os.close(0)
    try:
        reactor, at = still_reactor()
        try:
            assert reactor._poller.fileno() == 0
            waits = Waits(monkeypatch)
            await reactor._wait(at + 0.0015)
            await reactor._wait(at + 10.0)
            assert [call[:2] for call in waits.calls] == [
                ("select", [0]),
                ("wait_readable", 0),
            ]
        finally:
            reactor._poller.close()
    finally:
        os.dup2(saved, 0)
        os.close(saved)


class FarDescriptor:
    """The reactor's poller, as if its descriptor were 1024."""

    def __init__(self, poller: object) -> None:
        self.poller = poller

    def fileno(self) -> int:
        return 1024

    def __getattr__(self, name: str) -> object:
        return getattr(self.poller, name)


async def test_a_poller_descriptor_select_cannot_take_is_not_given_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # select() takes descriptors below 1024 only; a process with many open may get more.
    waits = Waits(monkeypatch)
    reactor, at = still_reactor()
    monkeypatch.setattr(reactor, "_poller", FarDescriptor(reactor._poller))
    await reactor._wait(at + 0.0015)  # the rest of the wait: the reactor's next turn
    await reactor._wait(at + 10.0)
    assert [call[:2] for call in waits.calls] == [("wait_readable", 1024)]


async def test_a_selector_without_a_descriptor_polls_every_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)
    waits = Waits(monkeypatch)
    reactor, at = still_reactor(use_epoll=False)
    assert reactor._poller.fileno() == -1
    await reactor._wait(at + 10.0)
    assert waits.calls == [("sleep", 0.001, at + 10.0 - FINE_WAIT / 2)]


class Kernel:
    """Stands in for a link's socket: each send takes at most the next of ``room``
    (0: nothing, as a full buffer refuses), all of it once ``room`` is used up."""

    def __init__(self, *room: int) -> None:
        self.room = list(room)
        self.taken = bytearray()
        self.clock: list[float] | None = None  # moved on by ``spent`` at each send
        self.spent = 0.0

    def send(self, data: bytes) -> int:
        if self.clock is not None:
            self.clock[0] += self.spent
        took = min(len(data), self.room.pop(0)) if self.room else len(data)
        if not took:
            raise BlockingIOError
        self.taken += data[:took]
        return took


async def link_on(kernel: Kernel) -> tuple[Link, list[float]]:
    """A link writing to ``kernel``, on a reactor whose clock reads ``clock[0]``; it has
    no descriptor, so nothing is watched."""
    reactor = Reactor(Feeder([]))
    clock = [1.0]
    reactor.clock = engine_clock(lambda: clock[0])
    link = Link(reactor, Machine(1, idle))
    link.sock = kernel  # type: ignore[assignment]
    return link, clock


def flush_at(link: Link, clock: list[float], when: float) -> None:
    clock[0] = when
    link._flush()


CONTENT = b"c" * 100  # a message's content, marked, carried before the next commands
COMMANDS = b"m" * 200


async def test_a_mark_the_first_send_passes_is_noted_then_not_when_the_rest_goes() -> None:
    link, clock = await link_on(kernel := Kernel(150, 100))
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT), began=0.5) is False
    assert link.marked_at == 0.5  # when the caller began the write, not when the send returned
    flush_at(link, clock, 2.0)
    flush_at(link, clock, 3.0)
    assert (link.marked_at, link.written_at, link.pending) == (0.5, 3.0, b"")
    assert kernel.taken == CONTENT + COMMANDS


async def test_a_first_send_that_takes_exactly_the_marked_part_notes_the_mark() -> None:
    link, clock = await link_on(Kernel(len(CONTENT)))
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT), began=0.5) is False
    flush_at(link, clock, 2.0)
    assert (link.marked_at, link.written_at) == (0.5, 2.0)


async def test_a_mark_is_noted_by_the_send_that_takes_its_last_byte() -> None:
    link, clock = await link_on(kernel := Kernel(40, 30, 30, 50))
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT)) is False
    for when in (2.0, 3.0, 4.0):  # 70, 100 (the mark), then 150 bytes gone
        flush_at(link, clock, when)
    assert (link.marked_at, link.pending) == (3.0, COMMANDS[50:])
    flush_at(link, clock, 5.0)
    assert (link.marked_at, link.written_at, link.mark) == (3.0, 5.0, 0)
    assert kernel.taken == CONTENT + COMMANDS


async def test_a_marked_write_queued_behind_another_notes_its_own_marks_end() -> None:
    link, clock = await link_on(kernel := Kernel(50, 100, 100, 99))
    first = b"a" * 200
    link.marked_at = 0.5  # an earlier message's
    assert link.write(first) is False  # no mark: nothing noted
    assert (link.mark, link.marked_at) == (0, 0.5)
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT)) is False  # queued behind
    for when in (2.0, 3.0, 4.0, 5.0):  # 150, 250 (the mark), 349 bytes gone, then all
        flush_at(link, clock, when)
    assert (link.marked_at, link.written_at) == (4.0, 5.0)
    assert kernel.taken == first + CONTENT + COMMANDS


async def test_the_ends_noted_are_the_starts_of_the_sends_that_took_them() -> None:
    # Each send takes 0.25 s: on loopback it hands the bytes to the server, which may
    # answer before the call is back. What is noted is when the send began.
    link, clock = await link_on(kernel := Kernel(50, 100))
    kernel.clock, kernel.spent = clock, 0.25
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT), began=1.0) is False
    flush_at(link, clock, 2.0)  # 150 bytes gone: the mark is passed
    assert (link.marked_at, clock[0]) == (2.0, 2.25)
    flush_at(link, clock, 3.0)
    assert (link.marked_at, link.written_at, link.pending) == (2.0, 3.0, b"")


async def test_a_marked_write_the_kernel_takes_none_of_is_kept_whole() -> None:
    link, clock = await link_on(kernel := Kernel(0, 60))
    assert link.write(CONTENT + COMMANDS, mark=len(CONTENT)) is False
    assert link.pending == CONTENT + COMMANDS
    flush_at(link, clock, 2.0)  # 60 bytes
    flush_at(link, clock, 3.0)  # the rest
    assert (link.marked_at, link.written_at) == (3.0, 3.0)
    assert kernel.taken == CONTENT + COMMANDS


async def test_a_loopback_connection_goes_on_at_once_watched_for_reading() -> None:
    # On loopback the handshake is over before connect() returns: the session is
    # resumed with its link within start(), its socket watched for what it reads.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        assert m.reactor is not None
        m.seen.append(watched(m.reactor, link))

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        feeder = Feeder([])
        reactor = Reactor(feeder, use_epoll=False)
        feeder.reactor = machine.reactor = reactor
        reactor.start(machine)
        at_once = list(machine.seen)
        with trio.fail_after(LIMIT):
            await reactor.run()  # the rest, if anything is left
    assert at_once == [selectors.EVENT_READ]


async def test_the_reactor_waits_with_epoll_where_there_is_one_unless_told_not_to() -> None:
    if not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    assert type(Reactor(Feeder([]))._poller).__name__ == "_Epoll"
    assert type(Reactor(Feeder([]), use_epoll=False)._poller).__name__ == "_Selector"


async def test_the_selector_fallback_waits_on_its_selectors_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # epoll's, poll's or kqueue's selector has a descriptor: waited on, not polled.
    waits = Waits(monkeypatch)
    reactor, at = still_reactor(use_epoll=False)
    fd = reactor._poller.fileno()
    assert fd >= 0
    await reactor._wait(at + 10.0)
    assert waits.calls == [("wait_readable", fd, at + 10.0 - FINE_WAIT / 2)]


@pytest.mark.parametrize("then", ["reads on", "ends", "asleep"])
@pollers
async def test_a_reply_that_came_before_a_reset_is_read_even_while_a_write_waits(
    use_epoll: bool, then: str
) -> None:
    # A server that answers and resets while the client still writes (a close with bytes
    # unread resets): the failed write must not lose the reply that came before it.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        reactor = m.reactor
        assert reactor is not None
        peer, _ = listener.accept()
        m.seen.append(link.write(b"x" * (32 << 20)))  # far more than the buffers hold
        _say_then_reset(peer, b"554 no\r\n", link)
        if then == "asleep":
            while not link.inbox:  # the failure is found while the session sleeps
                yield reactor.now() + 0.001
        m.seen.append((yield READ))
        if then == "ends":
            return
        try:
            m.seen.append((yield READ))
        except OSError as err:
            m.seen.append(type(err))
        m.seen.append(link.pending)

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        feeder = await drive([machine], use_epoll=use_epoll)
    told = {"reads on": [ConnectionResetError, b""], "ends": [], "asleep": [b"", b""]}
    assert machine.seen == [False, b"554 no\r\n", *told[then]] and feeder.ended == 1


@pollers
async def test_everything_that_came_before_a_reset_is_read_before_it_is_told(
    use_epoll: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reads of 4 bytes: the greeting takes two, and the reset is told only after both.
    monkeypatch.setattr(reactor_module, "RECEIVE_SIZE", 4)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        peer, _ = listener.accept()
        _say_then_reset(peer, b"220 hi\r\n", link)
        try:
            m.seen.append((yield from read_all(b"", b"\r\n")))
            yield READ
        except OSError as err:
            m.seen.append(type(err))

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        await drive([machine], use_epoll=use_epoll)
    assert machine.seen == [b"220 hi\r\n", ConnectionResetError]


class Unreadable:
    """Stands in for the socket of a connection whose write failed and that has nothing
    left to read: a read raises."""

    def recv(self, size: int) -> bytes:
        raise BlockingIOError


async def test_a_failed_write_with_nothing_left_to_read_tells_the_error_itself() -> None:
    reactor = Reactor(Feeder([]))

    def script(m: Machine) -> Talk:
        try:
            yield READ
        except OSError as err:
            m.seen.append(err)
        yield math.inf  # asleep from then on

    machine = Machine(1, script)
    link = Link(reactor, machine)
    link.sock = Unreadable()  # type: ignore[assignment]
    link.pending = b"QUIT\r\n"
    reactor._advance(link, None)  # to its READ
    broken = BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
    reactor._failed_write(link, broken)
    assert machine.seen == [broken] and link.pending == b""


async def test_a_write_the_kernel_takes_whole_leaves_nothing_waiting() -> None:
    link, _ = await link_on(kernel := Kernel())
    assert link.write(b"QUIT\r\n") is True
    assert (link.pending, link.mark, kernel.taken) == (b"", 0, b"QUIT\r\n")


def test_epoll_gives_at_most_a_turns_worth_of_ready_sockets() -> None:
    # The feeder and the timers are looked at between batches, however many are ready.
    if not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    poller = reactor_module._Epoll()
    pairs = [socket.socketpair() for _ in range(EVENTS_PER_TURN + 1)]
    try:
        for left, right in pairs:
            right.send(b"x")
            poller.register(left.fileno(), reactor_module.IN)
        assert len(poller.ready()) == EVENTS_PER_TURN
    finally:
        poller.close()
        for left, right in pairs:
            left.close()
            right.close()


@pytest.mark.parametrize("nonblock", ["at creation", "after"])
async def test_a_sessions_socket_is_non_blocking(
    nonblock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux makes a socket non-blocking as it creates it; elsewhere (no SOCK_NONBLOCK,
    # as on macOS) the reactor does it once the socket is made.
    if nonblock == "after":
        monkeypatch.setattr(reactor_module, "SOCK_STREAM_NONBLOCK", socket.SOCK_STREAM)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def script(m: Machine) -> Talk:
        link = yield CONNECT
        m.seen.append(link.sock.getblocking())

    with listener:
        machine = Machine(listener.getsockname()[1], script)
        await drive([machine])
    assert machine.seen == [False]


def test_trios_system_clock_is_read_as_trio_reads_it() -> None:
    async def readings() -> tuple[float, float, float, object]:
        clock = trio.lowlevel.current_clock()
        read = clock_reader(clock)
        return clock.current_time(), read(), clock.current_time(), read

    before, read, after, reader = trio.run(readings)
    assert before <= read <= after and after - before < 1.0
    assert not hasattr(reader, "__self__")  # not the clock's own method: no Python call

    mock = trio.testing.MockClock()

    async def on_a_mock_clock() -> float:
        trio.lowlevel.current_clock()
        read = clock_reader(mock)
        mock.jump(5.0)
        return read()

    assert trio.run(on_a_mock_clock, clock=mock) == 5.0


def test_a_connection_is_made_once_its_handshake_is_over() -> None:
    # What a connect that said "in progress" is asked: made already (on loopback, most
    # often), or not yet.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()
    with listener, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lone:
        assert not reactor_module._has_peer(lone)  # never connected
        with socket.create_connection(listener.getsockname(), timeout=LIMIT) as made:
            assert reactor_module._has_peer(made)
            peer, _ = listener.accept()
            peer.close()  # the server spoke its last: still a connection to read from
            select.select([made], [], [], LIMIT)
            assert reactor_module._has_peer(made)
