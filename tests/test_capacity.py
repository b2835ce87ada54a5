"""smtpbench capacity: the search's arithmetic, and whole searches against the sink, one
with a known service capacity (the server is the limit) and one where the engine is
made too slow for the rates asked (this machine is the limit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpbench.capacity.search import Ramp, Search
from smtpbench.capacity.verdict import Machine, StepResult, tool_signs
from smtpbench.capacity.window import between
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import RunInfo
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import evaluate
from smtpbench.servers.sink_capacity import ServiceCapacity
from smtpbench.thresholds import parse_threshold
from tests.commands import TRACEBACK, read_until, smtpbench, start_smtpbench


def test_ramp_rates_end_at_the_top() -> None:
    ramp = Ramp(100, 300, 1000)
    assert [ramp.rate(i) for i in range(ramp.ramp_steps)] == [100, 400, 700, 1000]
    ramp = Ramp(100, 400, 1000)
    assert [ramp.rate(i) for i in range(ramp.ramp_steps)] == [100, 500, 900, 1000]


def test_search_brackets_then_bisects() -> None:
    search = Search(Ramp(100, 100, 1000, refine=2))
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, held=rate <= 430)
    assert tried == [100, 200, 300, 400, 500, 450, 425]
    assert (search.held, search.broke) == (425, 450)


def test_search_ends_when_the_first_step_breaks_or_the_top_holds() -> None:
    search = Search(Ramp(100, 100, 300, refine=3))
    search.record(100, held=False)
    assert search.next_rate() is None and search.held is None and search.broke == 100
    search = Search(Ramp(100, 100, 300))
    while (rate := search.next_rate()) is not None:
        search.record(rate, held=True)
    assert search.top_held and search.held == 300


def test_service_capacity_queues_beyond_its_rate() -> None:
    queue = ServiceCapacity(100)
    assert queue.admit(0.0) == pytest.approx(0.01)
    assert queue.admit(1.0) == pytest.approx(0.01)  # idle again: no wait beyond service
    waits = [queue.admit(2.0) for _ in range(10)]  # ten at once: each waits its turn
    assert waits == pytest.approx([0.01 * k for k in range(1, 11)])


@pytest.fixture
def sink_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """``smtpbench sink`` on a free port, with the flags the test's parameter gives."""
    flags = getattr(request, "param", ())
    sink = start_smtpbench("sink", "--listen", "127.0.0.1:0", *flags)
    try:
        line = read_until(sink, r"listening on")
        yield int(line.strip().rsplit(":", 1)[1])
    finally:
        os.killpg(sink.pid, signal.SIGTERM)
        sink.wait(timeout=10)


def _capacity(port: int, out: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = smtpbench(
        "capacity",
        "--target",
        f"127.0.0.1:{port}",
        "--step-duration",
        "3s",
        "--settle",
        "1s",
        "--out",
        str(out),
        "--headless",
        *flags,
        timeout=120,
    )
    assert TRACEBACK not in done.stderr + done.stdout
    folders = list(out.iterdir())
    assert len(folders) == 1, done.stdout + done.stderr  # one results folder for the search
    folder = folders[0]
    for name in ("summary.json", "capacity-steps.csv", "capacity.png"):
        assert (folder / name).stat().st_size > 0, name
    return done, json.loads((folder / "capacity.json").read_text())


@pytest.mark.parametrize("sink_port", [("--capacity", "150/s")], indirect=True)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_server_slower_than_the_tool_is_found_within_one_step(
    sink_port: int, workers: str, tmp_path: Path
) -> None:
    done, found = _capacity(
        sink_port,
        tmp_path,
        "--workers",
        workers,
        "--from",
        "60/s",
        "--step",
        "60/s",
        "--to",
        "300/s",
        "--threshold",
        "p99(DATA end) < 200ms",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The sink serves 150 messages a second: 120/s holds, 180/s does not.
    assert (found["held"], found["broke"]) == (120, 180), found["conclusion"]
    # The queue grows: messages are accepted at the sink's pace, not the rate's.
    assert found["broken_by"] == ["p99(DATA end) < 200ms", "messages accepted >= 90% of 180/s"]
    assert found["limit"] == "server"
    broken = found["steps"][-1]
    assert broken["rate"] == 180 and not broken["held"] and broken["tool_signs"] == []
    assert [s["rate"] for s in found["steps"]] == [60, 120, 180]  # no step after the break
    assert "highest rate that held: 120/s; first that did not: 180/s" in done.stdout
    assert "the server was the limit" in done.stdout


def test_a_tool_slower_than_the_server_is_named_as_the_limit(
    sink_port: int, tmp_path: Path
) -> None:
    # 8 ms of CPU per session: 20/s takes 16% of a core, 220/s would take 176%.
    done, found = _capacity(
        sink_port,
        tmp_path,
        "--from",
        "20/s",
        "--step",
        "200/s",
        "--to",
        "420/s",
        "--test-slow-engine",
        "8ms",
    )
    assert found["limit"] == "machine", found["conclusion"]
    broken = next(s for s in found["steps"] if s["rate"] == found["broke"])
    assert broken["tool_signs"], broken
    assert "sessions started >= 90% of" in " ".join(broken["broken_by"])
    assert "this machine, not the server, was the limit" in done.stdout
    assert found["broke"] in (20, 220) and found["held"] in (20, None)


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (("--to", "0/s"), "--to"),
        (("--to", "fast"), "--to"),
        (("--to", "100/s", "--from", "200/s"), "--to"),
        (("--to", "100/s", "--step-duration", "2s", "--settle", "2s"), "--settle"),
        (("--to", "100/s", "--threshold", "p99(FOO) < 1ms"), "--threshold"),
        (("--to", "100/s", "--reach", "150%"), "--reach"),
        (("--to", "100/s", "--refine", "-1"), "--refine"),
    ],
)
def test_bad_flags_are_named(flags: tuple[str, ...], names: str, tmp_path: Path) -> None:
    done = smtpbench("capacity", "--out", str(tmp_path / "out"), "--headless", *flags)
    assert done.returncode == 2, done.stdout + done.stderr
    assert names in done.stderr and TRACEBACK not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _first_step(p50: dict[str, float]) -> StepResult:
    return StepResult(
        index=1,
        rate=100,
        began=0.0,
        window=(1.0, 3.0),
        achieved=100,
        messages=100,
        p50=p50,
        p99=p50,
        start_lag_p99=0.001,
        server_p50=p50.get("DATA end"),
        results=(),
        machine=Machine(0.1, 1000, 5),
    )


def test_the_engine_falling_behind_blames_this_machine_and_waiting_for_a_cpu_alone_does_not() -> (
    None
):
    first = _first_step({"banner": 0.002, "DATA end": 0.004})
    busy = Machine(0.3, 1000, 50, cpu_wait=0.5)
    # Kept up (on time, every session started): waiting for a CPU is only a note.
    signs, notes = tool_signs(400, 0.9, 399, 0.002, {"DATA end": 0.2}, busy, first)
    assert signs == () and "waited for a CPU 50%" in notes[0]
    # Late with slots free: the engine fell behind, and waiting for a CPU says why.
    signs, notes = tool_signs(400, 0.9, 399, 0.2, {"DATA end": 0.2}, busy, first)
    assert "sessions started late with slots free" in signs[0]
    assert "waited for a CPU 50%" in signs[1] and notes == ()
    # Short of the rate while the server answered as fast as at first.
    signs, _ = tool_signs(400, 0.9, 200, 0.01, {"banner": 0.002, "DATA end": 0.005}, busy, first)
    assert "200.0 of 400 sessions/s started" in signs[0]
    # Short of the rate because the server slowed (its banner here): not this machine.
    idle = Machine(0.3, 1000, 1000, cpu_wait=0.0)
    signs, _ = tool_signs(400, 0.9, 200, 0.01, {"banner": 0.5, "DATA end": 0.005}, idle, first)
    assert signs == ()
    # A saturated engine is a sign on its own.
    signs, _ = tool_signs(400, 0.9, 399, 0.001, {}, Machine(0.97, 1000, 5), first)
    assert signs == ("the engine's CPU was saturated (97% of one core)",)


def test_a_steady_part_counts_only_what_happened_in_it() -> None:
    recorder = Recorder(RunInfo("t", "sink", "load", "rate", 10.0, None, 1, "now", "0"))
    for _ in range(100):  # the first second: fast replies
        recorder.session_started(0.001)
        recorder.reply(Step.DATA_END, 250, 0.002)
    recorder.flush(1.0)
    before = recorder.snapshot(1.0)
    for k in range(50):  # the next: slower ones, and a few 451
        recorder.session_started(0.001)
        recorder.reply(Step.DATA_END, 451 if k < 5 else 250, 0.2)
    recorder.flush(2.0)
    part = between(before, recorder.snapshot(2.0))
    assert part.elapsed == 1.0 and part.counters.started == 50
    assert part.latency_count(Step.DATA_END) == 50
    assert part.histogram(Step.DATA_END).percentile(50) == pytest.approx(0.2, rel=0.01)
    assert part.reply_codes(Step.DATA_END) == {250: 45, 451: 5}
    results = evaluate(
        [parse_threshold("p99(DATA end) < 100ms"), parse_threshold("rate(4xx) < 5%")], part
    )
    assert [r.passed for r in results] == [False, False]
    assert results[1].measured == pytest.approx(0.1)


@pytest.mark.parametrize("value", ["0/s", "fast", "-3/s"])
def test_a_sink_capacity_that_makes_no_sense_is_refused(value: str) -> None:
    done = smtpbench("sink", "--listen", "127.0.0.1:0", f"--capacity={value}", timeout=30)
    assert done.returncode == 2 and "--capacity" in done.stderr
    assert TRACEBACK not in done.stderr
