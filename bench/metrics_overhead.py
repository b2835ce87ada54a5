"""What full metrics cost: the same load with every latency sample, reply code and
error recorded (both latency views, the per-second series), against the same load
with a recorder that keeps the session and message counters only.

    python bench/metrics_overhead.py --repeats 5

Runs the engine in this process (pinned to one CPU) against Postfix's smtp-sink
(pinned to the other), alternating the two recorders, 20 concurrent sessions,
1 KiB messages, pipelining on; prints medians of messages per second and client
CPU per message, and the ratio counters-only / full. Loopback only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_clients import placement, postfix_binary, postfix_sink

from smtpbench.engine.runner import LoadRun
from smtpbench.engine.transport import resolve
from smtpbench.metrics.events import SessionEvents
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunInfo
from smtpbench.run.prepare import run_info
from smtpbench.scenario import (
    IntRange,
    MessageFactory,
    Scenario,
    SizeDistribution,
    default_scenario,
    with_overrides,
)


class CountersOnly(SessionEvents):
    """Keeps the counters; drops every latency sample, reply code and error: what a
    session reports (``SessionEvents``, which it subclasses, as sessions ask) with the
    samples left out. A recorder in every other way: everything else goes to a
    ``Recorder`` it holds (a class of this script cannot inherit from the compiled
    ``Recorder`` of a compiled build). The counters it
    keeps are that recorder's, one attribute further away: a few nanoseconds a call, left
    in the baseline, so the cost of full metrics can only read lower than it is."""

    def __init__(self, info: RunInfo) -> None:
        object.__setattr__(self, "inner", Recorder(info))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.inner, name, value)

    def session_started(self, lag: float) -> None:
        inner = self.inner
        inner.started += 1
        inner.in_flight += 1

    def sent(self, size: int) -> None:
        self.inner.bytes_sent += size

    def timed(self, step: int, seconds: float) -> None:
        pass

    def reply(
        self, step: int, code: int, seconds: float | None = None, enhanced: str | None = None
    ) -> None:
        pass

    def recipient(self, accepted: bool) -> None:
        self.inner.recipient(accepted)

    def message(self, accepted: bool, latency: float | None) -> None:
        if accepted:
            self.inner.messages_accepted += 1
        else:
            self.inner.messages_rejected += 1

    def error(self, error: object, step: int) -> None:
        pass

    def diverged(self, step: int, differs: bool) -> None:
        self.inner.diverged(step, differs)

    def session_ended(
        self, number: int, end: float, latency: float, aborted: int, failure: object
    ) -> None:
        inner = self.inner
        inner.in_flight -= 1
        inner.completed += 1
        inner.messages_aborted += aborted
        inner.failed += failure is not None


def scenario(port: int, per_connection: int, messages: int) -> Scenario:
    base = with_overrides(
        default_scenario(),
        host="127.0.0.1",
        port=port,
        concurrency=20,
        sessions=max(1, messages // per_connection),
        seed=1,
    )
    session = dataclasses.replace(
        base.session,
        messages=IntRange(per_connection, per_connection),
        size=SizeDistribution.fixed(1024),
        pipelining=True,
    )
    return dataclasses.replace(base, session=session)


async def one_run(
    s: Scenario, recorder_class: Callable[[RunInfo], Recorder | CountersOnly]
) -> tuple[float, float, int]:
    assert s.target.host is not None
    address = await resolve(s.target.host, s.target.port)
    factory = MessageFactory(s, seed=1)
    recorder = recorder_class(run_info(s, str(address), 1))
    began = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    await LoadRun(s, address, factory, recorder).run()  # type: ignore[arg-type]
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return wall, used, recorder.messages_accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--messages", type=int, default=40_000)
    options = parser.parse_args()
    binary = postfix_binary("smtp-sink")
    if binary is None:
        print("needs Postfix's smtp-sink (Debian package postfix)", file=sys.stderr)
        return 2
    where = placement(True)
    if where.client:
        os.sched_setaffinity(0, {int(where.client[-1])})
    rows = []
    with postfix_sink(binary, where) as sink:
        port = sink.port
        for per_connection in (1, 100):
            s = scenario(port, per_connection, options.messages)
            figures: dict[str, list[tuple[float, float]]] = {"full": [], "counters": []}
            for _ in range(options.repeats):
                for name, cls in (("full", Recorder), ("counters", CountersOnly)):
                    wall, cpu, accepted = trio.run(one_run, s, cls)
                    figures[name].append((accepted / wall, cpu / accepted * 1e6))
            med = {
                name: (
                    statistics.median(r for r, _ in runs),
                    statistics.median(c for _, c in runs),
                )
                for name, runs in figures.items()
            }
            rows.append((per_connection, med))
    print(f"metrics overhead: {where.description}")
    print(
        f"20 concurrent sessions, 1 KiB messages, pipelining, {options.messages} messages "
        f"a run, median of {options.repeats} alternating runs"
    )
    print(
        f"{'messages/connection':<20}{'full msg/s':>12}{'counters msg/s':>16}"
        f"{'full/counters':>15}{'full us/msg':>13}{'counters us/msg':>17}"
    )
    for per_connection, med in rows:
        full, counters = med["full"], med["counters"]
        print(
            f"{per_connection:<20}{full[0]:>12,.0f}{counters[0]:>16,.0f}"
            f"{full[0] / counters[0]:>15.3f}{full[1]:>13.0f}{counters[1]:>17.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
