"""The address a run loads: the scenario's target, or the embedded sink started for it
when the scenario names no host; what each session needs to connect checked."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from smtpbench.engine.embedded import EmbeddedSink, EmbeddedSinkError, embedded_sink
from smtpbench.engine.targets import check_connections
from smtpbench.engine.transport import Address, TargetError, resolve
from smtpbench.scenario import Scenario


def _check(scenario: Scenario, address: Address) -> None:
    check_connections(
        scenario.target, address, scenario.client.addresses if scenario.client.proxy else ()
    )


@asynccontextmanager
async def open_target(scenario: Scenario) -> AsyncIterator[tuple[Address, str]]:
    """The address to load and how to name it, from a trio loop; the embedded sink, if
    started, stops on the way out."""
    if scenario.target.host is None:
        async with embedded_sink(scenario.sink.to_argv()) as (host, port):
            address = await resolve(host, port)
            _check(scenario, address)
            yield address, f"embedded sink {address}"
    else:
        address = await resolve(scenario.target.host, scenario.target.port)
        _check(scenario, address)
        yield address, str(address)


def resolve_now(host: str, port: int) -> Address:
    """The blocking twin of ``transport.resolve``, for a caller with no trio loop."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise TargetError(f"cannot resolve {host!r}: {err.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return Address(host, port, family, sockaddr)


def open_target_now(scenario: Scenario) -> tuple[Address, str, EmbeddedSink | None]:
    """The address to load, how to name it, and the embedded sink started when the
    scenario names no host (the caller stops it). ``TargetError`` or
    ``EmbeddedSinkError`` (the sink stopped again) if not."""
    sink: EmbeddedSink | None = None
    try:
        if scenario.target.host is None:
            sink = EmbeddedSink.start(scenario.sink.to_argv())
            address = resolve_now(sink.host, sink.port)
            label = f"embedded sink {address}"
        else:
            address = resolve_now(scenario.target.host, scenario.target.port)
            label = str(address)
        _check(scenario, address)
    except (TargetError, EmbeddedSinkError):
        if sink is not None:
            sink.stop()
        raise
    return address, label, sink
