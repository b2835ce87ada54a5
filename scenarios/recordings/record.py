"""Makes the example recordings in this folder: each of the project's scenarios, cut to a
few sessions, run through the recording proxy against the embedded sink and against
aiosmtpd (a test dependency: ``pip install -e '.[test]'``).

    python scenarios/recordings/record.py

Scenarios with large messages are recorded with sizes and hashes only (``--no-content``):
their replay sends stand-in messages of the recorded sizes.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import trio
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from smtpbench.engine.runner import LoadRun  # noqa: E402
from smtpbench.engine.transport import resolve  # noqa: E402
from smtpbench.headless import run_info  # noqa: E402
from smtpbench.metrics.recorder import Recorder  # noqa: E402
from smtpbench.scenario import MessageFactory, load_scenario, with_overrides  # noqa: E402
from smtpbench.servers.proxy import ProxyConfig, serve_proxy  # noqa: E402
from smtpbench.servers.sink import SinkConfig, serve_sink  # noqa: E402

HERE = Path(__file__).resolve().parent
# scenario: (sessions, keep message content)
EXAMPLES = {
    "default": (20, True),
    "newsletter-burst": (5, True),
    "steady-relay": (5, False),
    "slow-trickle": (4, False),
}


class Accept:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


async def record(name: str, sessions: int, keep: bool, port: int, out: Path) -> int:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    scenario = with_overrides(scenario, host="127.0.0.1", port=25, sessions=sessions, seed=1)
    async with trio.open_nursery() as nursery:
        config = ProxyConfig("127.0.0.1", port, out, keep_content=keep)
        proxy = await nursery.start(serve_proxy, config)
        scenario = with_overrides(scenario, port=proxy.address[1])
        address = await resolve("127.0.0.1", proxy.address[1])
        recorder = Recorder(run_info(scenario, str(address), 1))
        snapshot = await LoadRun(scenario, address, MessageFactory(scenario), recorder).run()
        while proxy.stats.sessions_recorded < snapshot.counters.started:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return snapshot.counters.started


async def with_sink(name: str, sessions: int, keep: bool) -> None:
    async with trio.open_nursery() as nursery:
        sink = await nursery.start(serve_sink, SinkConfig())
        out = HERE / f"{name}-sink.jsonl"
        count = await record(name, sessions, keep, sink.address[1], out)
        print(f"{out.name}: {count} sessions")
        nursery.cancel_scope.cancel()


def with_aiosmtpd(name: str, sessions: int, keep: bool) -> None:
    port = _free_port()
    controller = Controller(Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = HERE / f"{name}-aiosmtpd.jsonl"
        count = trio.run(record, name, sessions, keep, port, out)
        print(f"{out.name}: {count} sessions")
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    for name, (sessions, keep) in EXAMPLES.items():
        trio.run(with_sink, name, sessions, keep)
        with_aiosmtpd(name, sessions, keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
