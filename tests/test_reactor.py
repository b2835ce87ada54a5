"""The reactor's own edges, against the embedded sink in its own process: the selector it
falls back to where epoll is missing, writes the kernel cannot take at once, many
sessions in flight, and sessions cut at the end of the grace period."""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine import reactor
from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.scenario import Scenario, parse_scenario
from tests.runs import run_against, scenario_for

ROOT = Path(__file__).resolve().parent.parent


async def run_with_sink(scenario_of, faults: dict[str, object] | None = None) -> Snapshot:
    plan = parse_fault_table(faults or {})
    async with embedded_sink(plan.to_argv()) as (_, port):
        with trio.fail_after(120):
            return await run_against(scenario_of(port))


def closed(port: int, body: str) -> Scenario:
    scenario = parse_scenario(f'name = "reactor"\n{body}')
    return dataclasses.replace(
        scenario, target=dataclasses.replace(scenario.target, host="127.0.0.1", port=port)
    )


async def test_the_selector_fallback_runs_a_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a platform without epoll: the selectors module's best selector instead.
    monkeypatch.delattr(select, "epoll")
    assert isinstance(reactor._poller(True), reactor._Selector)
    snapshot = await run_with_sink(lambda port: scenario_for(port, rate=100, duration=1))
    c = snapshot.counters
    assert c.started == 100
    assert c.messages_accepted == 100
    assert c.failed == 0


async def test_a_message_larger_than_the_socket_buffer_goes_out_whole() -> None:
    # 8 MiB cannot go in one send: the rest leaves as the kernel makes room.
    snapshot = await run_with_sink(
        lambda port: closed(
            port,
            '[load]\nconcurrency = 2\nsessions = 4\n[session]\nsize = "8MiB"\nmessages = 2\n',
        )
    )
    c = snapshot.counters
    assert c.messages_accepted == 8
    assert c.failed == 0
    assert c.bytes_sent > 8 * 8 * 1024 * 1024
    assert snapshot.histogram(Step.DATA_END).count == 8


async def test_many_sessions_in_flight_at_once() -> None:
    snapshot = await run_with_sink(
        lambda port: closed(port, "[load]\nconcurrency = 300\nsessions = 900\n")
    )
    c = snapshot.counters
    assert c.started == 900
    assert c.completed == 900
    assert c.failed == 0
    assert c.messages_accepted >= 900
    assert c.in_flight == 0


async def test_sessions_still_running_at_the_end_of_grace_are_cancelled() -> None:
    def stalled(port: int) -> Scenario:
        scenario = scenario_for(port, rate=20, duration=0.5)
        return dataclasses.replace(scenario, load=dataclasses.replace(scenario.load, grace=0.5))

    with trio.fail_after(30):
        snapshot = await run_with_sink(stalled, {"delay": {"MAIL": "30s"}})
    c = snapshot.counters
    assert c.started == 10
    assert c.completed == 10
    assert c.in_flight == 0
    assert snapshot.errors_by_class() == {ErrorClass.CANCELLED: 10}
    assert snapshot.failures[-1].step == "MAIL"
    assert snapshot.elapsed < 5  # cut at the grace period, not at the 30 s stall


async def test_a_rate_beyond_any_machine_ends_on_time() -> None:
    # A billion sessions a second against a server that takes 0.2 s per session: what
    # cannot start is counted as dropped in bulk, and the run ends at its duration
    # instead of stepping through each arrival (real clock: that is where time passes
    # while the engine works).
    from tests.test_runner_clock import make_run, scenario, timed_session

    s = scenario(rate=1e9, duration=1.0, max_concurrency=10, backlog=20, grace=1.0)
    with trio.fail_after(30):
        snapshot = await make_run(s, timed_session(0.2)).run()
    c = snapshot.counters
    assert c.scheduled == pytest.approx(1e9, rel=0.01)
    assert c.started + c.dropped == c.scheduled
    assert 30 <= c.started <= 80  # 10 slots of 0.2 s over 1 s, and the backlog
    assert snapshot.elapsed < 3.0


@pytest.mark.parametrize("arrivals", ["uniform", "poisson"])
async def test_a_worker_share_of_a_hopeless_rate_ends_on_time(arrivals: str) -> None:
    from smtpbench.engine.runner import LoadRun
    from smtpbench.engine.shares import Share
    from smtpbench.metrics.recorder import Recorder
    from smtpbench.run.prepare import run_info
    from smtpbench.scenario import MessageFactory
    from tests.test_runner_clock import ADDRESS, scenario, timed_session

    s = scenario(rate=1e8, duration=1.0, max_concurrency=4, backlog=4, arrivals=arrivals)
    recorder = Recorder(run_info(s, str(ADDRESS), 1))
    run = LoadRun(
        s,
        ADDRESS,
        MessageFactory(s, seed=1),
        recorder,
        make_session=timed_session(0.25),
        share=Share(1, 2),
    )
    with trio.fail_after(30):
        snapshot = await run.run()
    c = snapshot.counters
    assert c.scheduled == pytest.approx(5e7, rel=0.02)
    assert c.started + c.dropped == c.scheduled


def test_ctrl_c_at_a_hopeless_rate_stops_and_keeps_the_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "smtpbench", "run", "--headless", "--workers", "1"]
    # Ten slots: full at the first turn, however fast the sessions end, so the backlog
    # fills and the rest is dropped (in bulk, or the run would step through 1e9 a second).
    command += ["--rate", "1e9", "--duration", "60s", "--progress-interval", "0.5s"]
    command += ["--max-concurrency", "10"]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the run is under way
        if "achieved" in process.stdout.readline():
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == exitcodes.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    folders = [path for path in out.iterdir() if path.is_dir()]
    assert len(folders) == 1
    snapshot = read_results(folders[0])
    c = snapshot.counters
    assert c.dropped > 1_000_000  # far more asked for than any machine starts
    assert c.started + c.dropped == c.scheduled


async def test_only_messages_begun_and_never_ended_are_aborted() -> None:
    # Nothing listening: no message was ever begun, so none was aborted.
    from tests.servers import free_port

    with trio.fail_after(60):
        refused = await run_against(scenario_for(free_port(), rate=20, duration=0.5))
    c = refused.counters
    assert c.started == 10 and c.failed == 10
    assert refused.errors_by_class() == {ErrorClass.REFUSED: 10}
    assert c.messages_aborted == 0
    # Cut after the content went out: that message was begun and never ended.
    cut = await run_with_sink(
        lambda port: closed(
            port, "[load]\nconcurrency = 1\nsessions = 3\n[session]\nmessages = 4\n"
        ),
        {"disconnect": {"DATA end": "100%"}},
    )
    assert cut.counters.messages_aborted == 3
    assert cut.counters.messages_accepted == 0


async def test_running_out_of_file_descriptors_is_named(tmp_path: Path) -> None:
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    async with embedded_sink([]) as (_, port):  # not limited: only the client is
        command = [sys.executable, "-m", "smtpbench", "run", "--headless", "--workers", "1"]
        command += ["--target", f"127.0.0.1:{port}", "--concurrency", "200"]
        command += ["--sessions", "400", "--ignore-limits", "--out", str(tmp_path / "results")]
        with trio.fail_after(120):
            done = await trio.run_process(
                command,
                cwd=ROOT,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                preexec_fn=few_descriptors,
                env={**os.environ, "COLUMNS": "200"},
            )
    assert b"Traceback" not in done.stderr
    snapshot = read_results(next(path for path in (tmp_path / "results").iterdir()))
    assert snapshot.counters.started == 400
    assert snapshot.errors_by_class()[ErrorClass.NETWORK] > 0
    assert "ran out of file descriptors (limit 40)" in snapshot.failures[0].detail


def test_a_writes_first_part_is_noted_when_its_last_byte_goes() -> None:
    # A message's content carried before the next commands: its end is noted apart from
    # the whole write's, both when the first send takes it and when a later one does.
    import socket as socket_module

    class Clock:
        now_value = 1.0

        def now(self) -> float:
            return self.now_value

        def _want_write(self, link: object, on: bool) -> None:
            pass

    class Idle:
        """A session that is never started: only its link is used here."""

        address = None
        source = None
        deadline = math.inf

        def begin(self) -> Iterator[object]:
            yield from ()

        def ended(self, error: Exception | None) -> None:
            pass

    left, right = socket_module.socketpair()
    with left, right:
        left.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_SNDBUF, 4096)
        left.setblocking(False)
        clock = Clock()
        link = reactor.Link(clock, Idle())
        link.sock = left
        content = b"x" * 200_000  # more than the buffer takes at once
        assert link.write(content + b"MAIL FROM:<a@b>\r\n", mark=len(content)) is False
        assert link.mark > 0 and link.marked_at == 0.0  # the content is not all gone yet
        moved = 0
        while link.pending:
            clock.now_value += 1.0
            moved += len(right.recv(1 << 20)) if select.select([right], [], [], 1)[0] else 0
            link._flush()
        while select.select([right], [], [], 0.05)[0] and (got := right.recv(1 << 20)):
            moved += len(got)
        assert moved == len(content) + len(b"MAIL FROM:<a@b>\r\n")
        assert 1.0 < link.marked_at <= link.written_at
        assert link.mark == 0


def test_the_selector_fallback_watches_for_nothing_without_an_empty_mask() -> None:
    # Some selectors (kqueue's) refuse to be asked for no events: a socket watched for
    # nothing leaves the selector and comes back when watched for something again.
    import socket as socket_module

    poller = reactor._Selector()
    left, right = socket_module.socketpair()
    with left, right:
        right.sendall(b"250 ok\r\n")  # readable from now on
        fd = left.fileno()
        poller.register(fd, reactor.IN)
        assert [fd for fd, _ in poller.ready()] == [fd]
        poller.modify(fd, 0)
        poller.modify(fd, 0)  # twice is no error either
        assert poller.ready() == []
        assert fd not in poller._selector.get_map()
        poller.modify(fd, reactor.IN)
        assert [fd for fd, _ in poller.ready()] == [fd]
        poller.modify(fd, 0)
        poller.unregister(fd)  # from watched for nothing
        poller.register(fd, reactor.IN)
        poller.unregister(fd)  # from watched for something
        assert fd not in poller._selector.get_map()
    poller.close()
