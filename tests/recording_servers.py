"""Servers and runs for the recording, proxy, capture and replay tests, all on loopback:
aiosmtpd keeping every envelope, the embedded sink in-process, the proxy in front."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from smtpbench.engine.runner import LoadRun
from smtpbench.engine.transport import resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.run.prepare import run_info
from smtpbench.scenario import IntRange, MessageFactory, Scenario, default_scenario, with_overrides
from smtpbench.servers.proxy import ProxyConfig, RecordingProxy, serve_proxy
from smtpbench.servers.sink import Sink, SinkConfig, serve_sink
from tests.servers import LOOPBACK, aiosmtpd_serving

Envelope = tuple[str, tuple[str, ...], bytes]


@dataclass
class KeepingHandler:
    """aiosmtpd handler that keeps (sender, recipients, content) of every message."""

    envelopes: list[Envelope] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.envelopes.append(
                (
                    envelope.mail_from,  # type: ignore[attr-defined]
                    tuple(envelope.rcpt_tos),  # type: ignore[attr-defined]
                    bytes(envelope.original_content),  # type: ignore[attr-defined]
                )
            )
        return "250 2.0.0 OK"


def keeping_aiosmtpd() -> AbstractContextManager[tuple[int, KeepingHandler]]:
    return aiosmtpd_serving(KeepingHandler())


def scenario_to(port: int, **session: object) -> Scenario:
    """A short scenario against 127.0.0.1:port with session fields changed."""
    base = with_overrides(default_scenario(), host=LOOPBACK, port=port, rate=40, duration=0.5)
    return dataclasses.replace(base, session=dataclasses.replace(base.session, **session))


def varied(port: int) -> Scenario:
    """Several messages and recipients per session, sizes that differ."""
    from smtpbench.scenario.sizes import SizeDistribution

    return scenario_to(
        port,
        messages=IntRange(1, 3),
        recipients=IntRange(1, 4),
        size=SizeDistribution.uniform(600, 6000),
        rset_between_messages=True,
    )


async def run_scenario(scenario: Scenario, seed: int = 7) -> Snapshot:
    assert scenario.target.host is not None
    address = await resolve(scenario.target.host, scenario.target.port)
    factory = MessageFactory(scenario, seed=seed)
    recorder = Recorder(run_info(scenario, str(address), seed))
    with trio.fail_after(60):
        return await LoadRun(scenario, address, factory, recorder).run()


@asynccontextmanager
async def proxy_in_front(
    upstream_port: int, out: Path, **options: object
) -> AsyncIterator[RecordingProxy]:
    async with trio.open_nursery() as nursery:
        config = ProxyConfig(LOOPBACK, upstream_port, out, **options)  # type: ignore[arg-type]
        proxy = await nursery.start(serve_proxy, config)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def sink(**options: object) -> AsyncIterator[Sink]:
    async with trio.open_nursery() as nursery:
        running = await nursery.start(serve_sink, SinkConfig(**options))  # type: ignore[arg-type]
        try:
            yield running
        finally:
            nursery.cancel_scope.cancel()


async def settle(proxy: RecordingProxy, sessions: int) -> None:
    """Waits until the proxy wrote ``sessions`` sessions (sessions end after the client)."""
    with trio.fail_after(30):
        while proxy.stats.sessions_recorded < sessions:
            await trio.sleep(0.01)
