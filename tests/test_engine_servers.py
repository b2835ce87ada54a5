"""Load runs against real third-party servers: what the summary says was accepted is
what the server counted."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.steps import Step
from smtpbench.scenario import IntRange
from tests.runs import run_against, scenario_for
from tests.servers import aiosmtpd_server, postfix_smtp_sink


async def test_aiosmtpd_counts_what_the_summary_reports() -> None:
    with aiosmtpd_server() as (port, handler):
        scenario = scenario_for(port, rate=100, duration=2)
        session = dataclasses.replace(
            scenario.session, messages=IntRange(2, 2), recipients=IntRange(1, 3)
        )
        scenario = dataclasses.replace(scenario, session=session)
        with trio.fail_after(60):
            snapshot = await run_against(scenario)
    c = snapshot.counters
    assert c.started == 200
    assert c.failed == 0 and c.dropped == 0
    assert c.messages_accepted == 400
    assert handler.messages == c.messages_accepted
    assert handler.recipients == c.recipients_accepted
    assert snapshot.reply_codes(Step.DATA_END) == {250: 400}
    assert snapshot.latency_count(Step.RCPT) == c.recipients_accepted


@pytest.mark.postfix
async def test_postfix_smtp_sink_counts_what_the_summary_reports() -> None:
    with postfix_smtp_sink() as sink:
        scenario = scenario_for(sink.port, rate=100, duration=3)
        with trio.fail_after(60):
            snapshot = await run_against(scenario)
        delivered = sink.delivered_once(snapshot.counters.messages_accepted)
    c = snapshot.counters
    assert c.started == 300
    assert c.messages_accepted == 300
    assert delivered == c.messages_accepted
    assert snapshot.errors_by_class() == {}


@pytest.mark.postfix
async def test_postfix_smtp_sink_closed_model() -> None:
    with postfix_smtp_sink() as sink:
        scenario = scenario_for(sink.port, concurrency=4, sessions=200)
        with trio.fail_after(60):
            snapshot = await run_against(scenario)
        delivered = sink.delivered_once(snapshot.counters.messages_accepted)
    assert snapshot.counters.started == 200
    assert snapshot.counters.messages_accepted == delivered == 200
    # The closed model starts each session when a slot frees: no lag worth the name.
    assert snapshot.histogram(Step.CONNECT).count == 200


async def test_nothing_listening_is_counted_as_refused() -> None:
    from tests.servers import free_port

    scenario = scenario_for(free_port(), rate=50, duration=0.5)
    with trio.fail_after(30):
        snapshot = await run_against(scenario)
    assert snapshot.counters.started == 25
    assert snapshot.counters.failed == 25
    assert snapshot.errors_by_class() == {ErrorClass.REFUSED: 25}
    assert snapshot.failures[-1].error == "connection refused"
