"""Makes the example recordings in this folder: each of the project's scenarios, cut to a
few sessions, run through the recording proxy against the embedded sink and against
aiosmtpd (a test dependency: ``pip install -e '.[test]'``).

    python scenarios/recordings/record.py [--out DIR] [--only NAME ...]

Scenarios with large messages are recorded with sizes and hashes only (``--no-content``):
their replay sends stand-in messages of the recorded sizes. ``submission`` is the default
scenario logging in with AUTH PLAIN first, recorded against the sink only (aiosmtpd
offers no AUTH here): the proxy leaves the credentials out, and ``smtpbench replay
--user NAME`` logs in again.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
from pathlib import Path

import trio
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from smtpbench.engine.runner import LoadRun  # noqa: E402
from smtpbench.engine.transport import resolve  # noqa: E402
from smtpbench.metrics.recorder import Recorder  # noqa: E402
from smtpbench.run.prepare import run_info  # noqa: E402
from smtpbench.scenario import MessageFactory, load_scenario, with_overrides  # noqa: E402
from smtpbench.scenario.model import Auth  # noqa: E402
from smtpbench.servers.proxy import ProxyConfig, serve_proxy  # noqa: E402
from smtpbench.servers.sink import SinkConfig, serve_sink  # noqa: E402

HERE = Path(__file__).resolve().parent
# example: (scenario, sessions, keep message content, log in first)
EXAMPLES = {
    "default": ("default", 20, True, False),
    "newsletter-burst": ("newsletter-burst", 5, True, False),
    "steady-relay": ("steady-relay", 5, False, False),
    "slow-trickle": ("slow-trickle", 4, False, False),
    "submission": ("default", 5, True, True),
}
# The account the submission example logs in with: the sink takes any, and the recording
# keeps neither.
LOGIN = Auth(mechanism="PLAIN", username="alice", password="example-only")


class Accept:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


async def record(example: str, port: int, out: Path) -> int:
    name, sessions, keep, login = EXAMPLES[example]
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    scenario = with_overrides(scenario, host="127.0.0.1", port=25, sessions=sessions, seed=1)
    if login:
        scenario = dataclasses.replace(scenario, name=example, auth=LOGIN)
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


async def with_sink(example: str, folder: Path) -> None:
    async with trio.open_nursery() as nursery:
        sink = await nursery.start(serve_sink, SinkConfig())
        out = folder / f"{example}-sink.jsonl"
        count = await record(example, sink.address[1], out)
        print(f"{out.name}: {count} sessions")
        nursery.cancel_scope.cancel()


def with_aiosmtpd(example: str, folder: Path) -> None:
    port = _free_port()
    controller = Controller(Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = folder / f"{example}-aiosmtpd.jsonl"
        count = trio.run(record, example, port, out)
        print(f"{out.name}: {count} sessions")
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the example recordings.")
    parser.add_argument("--out", type=Path, default=HERE, help="where (default: beside this)")
    parser.add_argument("--only", nargs="+", choices=sorted(EXAMPLES), help="these examples")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for example in args.only or EXAMPLES:
        trio.run(with_sink, example, args.out)
        if not EXAMPLES[example][3]:
            with_aiosmtpd(example, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
