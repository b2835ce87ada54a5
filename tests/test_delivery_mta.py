"""The client that behaves like a sending MTA (``[delivery] mode = "mta"``) against the
sink pushing back like a real server: greylisting and per-client limits are passed by
trying again, while the open model counts the same deferrals as failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.engine.delivery_queue import Attempt, DeliveryQueue
from smtpbench.metrics.kinds import MESSAGE_LATENCY
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.results import read_results
from smtpbench.protocol.steps import Step
from smtpbench.run.prepare import run_info
from smtpbench.scenario import MessageFactory, parse_scenario
from smtpbench.scenario.delivery import Delivery
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.writer import scenario_to_toml
from tests.commands import smtpbench

GREYLISTED = """
name = "greylisted"
seed = 1
[load]
rate = 50
sessions = 30
[session]
recipients = 2
[sink]
greylist = "300ms"
"""
MTA = """
[delivery]
mode = "mta"
first_retry = "200ms"
max_retry = "2s"
max_age = "30s"
"""


def run(tmp_path: Path, text: str, exit_code: int = exitcodes.OK) -> tuple[dict[str, int], Path]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(text)
    out = tmp_path / "out"
    done = smtpbench("run", str(scenario), "--headless", "--out", str(out), timeout=120)
    assert done.returncode == exit_code, done.stdout + done.stderr
    (folder,) = out.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    return summary["counters"], folder


def test_greylisting_is_passed_by_trying_again(tmp_path: Path) -> None:
    counters, folder = run(tmp_path, GREYLISTED + MTA)
    assert counters["messages_accepted"] == 30  # every message, in the end
    assert counters["messages_first_attempt"] == 0  # a greylist defers every first try
    # Tried at 0, 0.2 s (still greylisted) and 0.6 s: two deferrals each.
    assert counters["messages_deferred"] == 60
    assert counters["messages_expired"] == counters["messages_queued"] == 0
    assert counters["messages_rejected"] == 0
    # Each deferral was tried again in a session of its own.
    assert counters["sessions_retried"] == 60 and counters["started"] == 90
    snapshot = read_results(folder)
    # Time to acceptance counts from the intended start: past the greylist's delay.
    assert snapshot.histogram(MESSAGE_LATENCY).percentile(50) >= 0.3
    assert "MTA-like delivery" in snapshot.info.load and snapshot.info.delivery == "mta"


def test_the_open_model_counts_the_same_deferrals_as_failures(tmp_path: Path) -> None:
    # Every session failed: the run says so with its exit code.
    counters, _ = run(tmp_path, GREYLISTED, exit_code=1)
    assert counters["messages_accepted"] == 0
    assert counters["messages_rejected"] == 30
    assert counters["messages_deferred"] == 0


def test_a_per_client_limit_is_met_by_coming_back_with_fewer_sessions(tmp_path: Path) -> None:
    text = (
        'name = "limited"\nseed = 1\n[load]\nrate = 200\nsessions = 40\n'
        # Slow data keeps sessions open long enough to be more than two at once.
        '[sink]\nclient_connection_limit = 2\ndelay = { DATA = "50ms" }\n' + MTA
    )
    counters, _ = run(tmp_path, text)
    assert counters["messages_accepted"] == 40
    assert counters["messages_deferred"] > 0  # 421s at the banner were met
    assert counters["messages_expired"] == counters["messages_queued"] == 0


def test_a_message_deferred_past_its_maximum_age_expires_and_the_run_ends(
    tmp_path: Path,
) -> None:
    text = GREYLISTED.replace('"300ms"', '"1h"') + MTA.replace('"30s"', '"1s"')
    counters, _ = run(tmp_path, text.replace("sessions = 30", "sessions = 5"), exit_code=1)
    assert counters["messages_accepted"] == 0
    assert counters["messages_expired"] == 5
    assert counters["messages_queued"] == 0


def _attempt(recorder: Recorder, recipients: int) -> tuple[Attempt, DeliveryQueue]:
    scenario = parse_scenario(f'name = "a"\n[session]\nrecipients = {recipients}\n')
    plan = MessageFactory(scenario, seed=1).plan_session(0)
    queue = DeliveryQueue(Delivery(mode="mta", first_retry=1.0, max_age=100.0), recorder, 10)
    attempt = Attempt(queue, plan, tuple(enumerate(plan.messages)), 0.0, 1, False)
    return attempt, queue


def test_only_the_recipients_still_owed_go_again() -> None:
    recorder = Recorder(run_info(parse_scenario('name = "a"'), "t", 1))
    attempt, queue = _attempt(recorder, 3)
    attempt.begun()
    for step, code in ((Step.MAIL, 250), (Step.RCPT, 250), (Step.RCPT, 450), (Step.RCPT, 550)):
        attempt.reply(step, code)
    attempt.reply(Step.DATA, 354)
    attempt.reply(Step.DATA_END, 250)
    assert attempt.settle(10.0) is None  # deferred: one recipient is still owed
    assert len(queue) == 1 and queue.due_at() == 11.0  # first_retry after the attempt
    item = queue.take()
    (index, message) = attempt.transactions[0]
    assert item.index == index and item.envelope.recipients == (message.recipients[1],)
    assert item.delivered and item.attempts == 1
    assert recorder.messages_deferred == 1 and recorder.messages_first_attempt == 0


def test_a_refusal_for_good_is_not_tried_again_and_a_first_success_is_counted() -> None:
    recorder = Recorder(run_info(parse_scenario('name = "a"'), "t", 1))
    attempt, queue = _attempt(recorder, 1)
    attempt.begun()
    attempt.reply(Step.MAIL, 550)
    assert attempt.settle(1.0) is False and not queue
    attempt, queue = _attempt(recorder, 1)
    attempt.begun()
    for step, code in ((Step.MAIL, 250), (Step.RCPT, 250), (Step.DATA, 354), (Step.DATA_END, 250)):
        attempt.reply(step, code)
    assert attempt.settle(1.0) is True and not queue
    assert recorder.messages_first_attempt == 1


def test_backoff_doubles_up_to_its_maximum() -> None:
    delivery = Delivery(mode="mta", first_retry=1.0, max_retry=5.0)
    assert [delivery.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        ('mode = "queue"\n', "delivery.mode", "'open' or 'mta'"),
        ('mode = "mta"\nfirst_retry = "1m"\nmax_retry = "1s"\n', "delivery", "at most max_retry"),
        ('mode = "mta"\ninitial_concurrency = 0\n', "delivery.initial_concurrency", "at least 1"),
        ('mode = "mta"\nmax_age = "soon"\n', "delivery.max_age", "duration"),
    ],
)
def test_a_wrong_delivery_table_names_its_key(table: str, key: str, said: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(f'name = "d"\n[delivery]\n{table}')
    assert caught.value.key == key and said in str(caught.value), str(caught.value)


def test_the_delivery_table_survives_the_results_copy() -> None:
    scenario = parse_scenario('name = "d"\n' + MTA)
    assert parse_scenario(scenario_to_toml(scenario)) == scenario
