"""The reactor driving small machines of the test's own against loopback servers, in
milliseconds: what a session is resumed with (its link, the bytes read, end of file),
what is thrown into it (a refused connect, a reset, a timeout past its deadline, the
cut at the end of the grace period), sleeps woken in order, bytes kept while a session
sleeps, writes the kernel cannot take at once, and the feeder told of every end."""

from __future__ import annotations

import errno
import functools
import math
import os
import selectors
import socket
import struct
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest
import trio

from smtpbench.engine.reactor import (
    CONNECT,
    READ,
    Link,
    Reactor,
    SessionCancelled,
    StepTimeout,
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

    def run(self) -> Talk:
        return self.script(self)


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


async def test_a_reset_while_a_session_sleeps_is_an_end_of_file_when_it_reads() -> None:
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
        await drive([machine])
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
        feeder = await drive(machines, cancel_after=0.05)
        nursery.cancel_scope.cancel()
    assert [m.seen for m in machines] == [["cancelled"], ["cancelled"]]
    assert feeder.ended == 2 and feeder.cuts >= 1


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
        m.seen.append("woke")

    machine = Machine(1, script)
    feeder = await drive([machine])
    assert machine.seen == ["woke"] and feeder.ended == 1
