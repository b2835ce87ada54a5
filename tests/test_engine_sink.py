"""Load runs against the embedded sink (in its own process, as `smtpbench run` starts
it), with the sink's faults: timing, drops, coordinated omission, misbehaviour."""

from __future__ import annotations

import dataclasses
import gc

import trio

from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.kinds import MESSAGE_LATENCY, START_LAG, ErrorClass
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.scenario import Scenario
from tests.exact_server import exact_server
from tests.runs import run_against, scenario_for


async def run_with_sink(faults: dict[str, object], **overrides: object) -> Snapshot:
    plan = parse_fault_table(faults)
    async with embedded_sink(plan.to_argv()) as (_, port):
        scenario = scenario_for(port, **overrides)
        with trio.fail_after(120):
            return await run_against(scenario)


def with_timeout(scenario: Scenario, step: Step, seconds: float) -> Scenario:
    timeouts = list(scenario.timeouts)
    timeouts[step] = seconds
    return dataclasses.replace(scenario, timeouts=tuple(timeouts))


async def test_500_sessions_per_second_for_10_seconds() -> None:
    snapshot = await run_with_sink({}, rate=500, duration=10)
    c = snapshot.counters
    assert abs(c.started - 5000) <= 25  # within 0.5%
    assert c.dropped == 0
    assert c.messages_accepted == c.started
    assert len(snapshot.series) >= 10


async def test_data_delay_shows_in_data_service_time() -> None:
    snapshot = await run_with_sink({"delay": {"DATA": "50ms"}}, rate=20, duration=3)
    p50 = snapshot.histogram(Step.DATA).percentile(50)
    # Never shorter than the delay; a little longer, by the sink's own timers (an event
    # loop's, late by a millisecond or more on a busy machine). How exactly the engine
    # measures is tested against an exact server below.
    assert 0.050 <= p50 <= 0.060, p50
    # Other commands are not slowed down by it.
    assert snapshot.histogram(Step.MAIL).percentile(50) < 0.02


async def test_data_end_delay_reads_as_the_delay() -> None:
    # The server's work on the message, timed from the final dot handed to the socket,
    # against a server whose delay is exact (an event loop's timers are not).
    with exact_server(data_end_delay=0.050) as server:
        with trio.fail_after(60):
            snapshot = await run_against(scenario_for(server.port, rate=20, duration=3))
        applied = sorted(server.applied)
    assert snapshot.counters.messages_accepted == 60
    assert abs(applied[len(applied) // 2] - 0.050) < 0.0005  # the server kept its word
    p50 = snapshot.histogram(Step.DATA_END).percentile(50)
    assert abs(p50 - 0.050) <= 0.001, p50
    assert snapshot.histogram(Step.DATA).percentile(50) < 0.02


async def test_server_too_slow_for_the_rate_drops_and_lags_within_bounds() -> None:
    plan = parse_fault_table({"delay": {"MAIL": "500ms"}})
    async with embedded_sink(plan.to_argv()) as (_, port):
        scenario = scenario_for(port, rate=200, duration=3, max_concurrency=10)
        scenario = dataclasses.replace(
            scenario, load=dataclasses.replace(scenario.load, backlog=50, grace=5.0)
        )
        from smtpbench.engine.runner import LoadRun
        from smtpbench.engine.transport import resolve
        from smtpbench.metrics.recorder import Recorder
        from smtpbench.run.prepare import run_info
        from smtpbench.scenario import MessageFactory

        address = await resolve("127.0.0.1", port)
        factory = MessageFactory(scenario, seed=1)
        recorder = Recorder(run_info(scenario, str(address), 1))
        run = LoadRun(scenario, address, factory, recorder)
        peak_in_flight = peak_waiting = 0

        async def watch() -> None:
            nonlocal peak_in_flight, peak_waiting
            while True:
                peak_in_flight = max(peak_in_flight, recorder.in_flight)
                peak_waiting = max(peak_waiting, recorder.waiting)
                await trio.sleep(0.005)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                snapshot = await run.run()
                nursery.cancel_scope.cancel()
    c = snapshot.counters
    assert c.scheduled == 600
    assert c.dropped > 300  # about 20 sessions/s get through, 200/s arrive
    assert c.started + c.dropped == c.scheduled
    # Memory is bounded by the cap and the backlog, however far behind the server is.
    assert peak_in_flight <= 10
    assert peak_waiting <= 50
    assert snapshot.histogram(START_LAG).percentile(99) > 0.5


async def test_coordinated_omission_shows_in_latency_from_intended_start() -> None:
    # 100 sessions/s, one at a time; the 100th MAIL stalls for 1 s once.
    snapshot = await run_with_sink(
        {"stall": {"MAIL": "1s@100"}}, rate=100, duration=5, max_concurrency=1
    )
    c = snapshot.counters
    assert c.started == 500 and c.dropped == 0
    # Sessions due during the stall started late: the sender's view shows it.
    message_p99 = snapshot.histogram(MESSAGE_LATENCY).percentile(99)
    assert message_p99 > 0.3, message_p99
    # The server's view per command does not, except in the max.
    mail = snapshot.histogram(Step.MAIL)
    assert mail.maximum >= 1.0
    for step in (Step.CONNECT, Step.BANNER, Step.EHLO, Step.MAIL, Step.RCPT, Step.DATA_END):
        assert snapshot.histogram(step).percentile(99) < 0.1, step


async def test_garbage_is_a_protocol_error_and_the_run_completes() -> None:
    snapshot = await run_with_sink({"garbage": {"MAIL": "100%"}}, rate=50, duration=1)
    c = snapshot.counters
    assert c.started == 50 and c.completed == 50
    assert c.failed == 50
    assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 50}
    assert int(snapshot.errors[ErrorClass.PROTOCOL, Step.MAIL]) == 50
    assert snapshot.failures[-1].error == "protocol error"


async def test_disconnect_in_the_middle_of_data_is_classified() -> None:
    snapshot = await run_with_sink({"disconnect": {"DATA end": "100%"}}, rate=50, duration=1)
    c = snapshot.counters
    assert c.completed == 50 and c.failed == 50
    assert c.messages_accepted == 0 and c.messages_aborted == 50
    assert snapshot.errors_by_class() == {ErrorClass.CLOSED: 50}
    assert int(snapshot.errors[ErrorClass.CLOSED, Step.DATA_END]) == 50
    transcript = snapshot.failures[-1].transcript
    assert transcript[-1].sent.startswith("(message content")


async def test_reply_faults_are_counted_per_command() -> None:
    snapshot = await run_with_sink({"reply": {"RCPT": "550:100%"}}, rate=50, duration=1)
    c = snapshot.counters
    assert c.messages_rejected == 50 and c.messages_accepted == 0
    assert c.recipients_rejected == 50
    assert snapshot.reply_codes(Step.RCPT) == {550: 50}
    assert snapshot.reply_codes(Step.RSET) == {250: 50}  # a real client resets the envelope
    assert snapshot.errors_by_class() == {ErrorClass.REPLY: 50}


async def test_421_shutdown_ends_sessions_without_crashing() -> None:
    snapshot = await run_with_sink({"shutdown_after": 10}, rate=50, duration=1)
    c = snapshot.counters
    assert c.completed == 50
    assert c.messages_accepted == 10
    assert snapshot.reply_codes(Step.BANNER).get(421) == 40


async def test_silence_times_out() -> None:
    plan = parse_fault_table({"delay": {"EHLO": "5s"}})
    async with embedded_sink(plan.to_argv()) as (_, port):
        scenario = with_timeout(scenario_for(port, rate=20, duration=0.5), Step.EHLO, 0.2)
        with trio.fail_after(60):
            snapshot = await run_against(scenario)
    assert snapshot.counters.failed == 10
    assert snapshot.errors_by_class() == {ErrorClass.TIMEOUT: 10}
    assert "within 0.2s" in snapshot.failures[-1].detail


async def test_what_the_process_held_is_frozen_for_the_run_only() -> None:
    # The collector leaves what existed before the run alone while it runs (gc.freeze),
    # and has all of it back once the run ends, so nothing stays out of its reach.
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(gc.get_freeze_count())
            await trio.sleep(0.05)

    with exact_server() as server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            with trio.fail_after(60):
                snapshot = await run_against(scenario_for(server.port, rate=20, duration=1))
            nursery.cancel_scope.cancel()
    assert snapshot.counters.messages_accepted == 20
    assert max(seen) > 1000  # the imports alone are tens of thousands of objects
    assert gc.get_freeze_count() == 0


async def test_an_ended_session_leaves_nothing_for_the_cycle_collector() -> None:
    # A session that ended is freed as the reactor lets go of it: no reference cycle
    # keeps it, its plan and its messages for a pass of the collector (left to it, a
    # long session's messages reached the oldest generation, and a full pass over them
    # stalled the reactor). What a run leaves for the collector does not grow with its
    # sessions.
    async def garbage_after(sessions: int) -> int:
        gc.collect()
        gc.disable()
        try:
            async with embedded_sink([]) as (_, port):
                scenario = scenario_for(port, concurrency=5, sessions=sessions)
                with trio.fail_after(120):
                    snapshot = await run_against(scenario)
            assert snapshot.counters.messages_accepted == sessions
            return gc.collect()
        finally:
            gc.enable()

    few, many = await garbage_after(10), await garbage_after(210)
    assert many - few < 200, (few, many)  # under one object per extra session
