"""The session machine delivering like an MTA (``[delivery] mode = "mta"``), with no
socket (the harness of ``test_session_machine.py``): what goes back to the queue, for
which recipients, what counts as delivered or refused for good, and how a session's end
moves the destination's concurrency window."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from smtpbench.engine.conversation import PlannedConversation
from smtpbench.engine.delivery_queue import DeliveryQueue
from smtpbench.engine.reactor import StepTimeout
from smtpbench.engine.session import SessionSettings
from smtpbench.metrics.recorder import Recorder
from smtpbench.protocol.server import MessageReceived
from smtpbench.run.prepare import run_info
from smtpbench.scenario import MessageFactory, parse_scenario
from smtpbench.transit.sends import TransitSends
from tests.test_session_machine import THINK, Outcome, answers, converse
from tests.test_session_machine_outcomes import Saying

MTA = '[delivery]\nmode = "mta"\nfirst_retry = "2s"\ninitial_concurrency = 5\n'
CAP = 10


def queue_for(scenario: str) -> DeliveryQueue:
    parsed = parse_scenario(f'name = "machine"\nseed = 1\n{MTA}{scenario}')
    return DeliveryQueue(parsed.delivery, Recorder(run_info(parsed, "test", 1)), CAP)


def deliver(
    tmp_path: Path, scenario: str, answer: Any = None, **options: Any
) -> tuple[Outcome, DeliveryQueue]:
    queue = queue_for(scenario)
    outcome = converse(
        tmp_path,
        MTA + scenario,
        answer,
        adjust=lambda s: dataclasses.replace(s, queue=queue),
        **options,
    )
    return outcome, queue


def test_a_recipient_greylisted_goes_back_to_the_queue_alone(tmp_path: Path) -> None:
    outcome, queue = deliver(
        tmp_path,
        "[session]\nrecipients = 2\n",
        answers(RCPT=[(450, "greylisted", "4.7.1"), (250, "ok", None)]),
        late=0.25,
    )
    assert len(queue) == 1
    item = queue.take()
    assert item.envelope.recipients == ("user0@smtpbench.test",)
    assert item.index == 0 and item.attempts == 1 and item.delivered == 1
    assert item.plan is outcome.session.conversation.plan  # its content comes from there
    assert item.origin == pytest.approx(1000 - 0.25)  # the intended start
    # Deferred: no outcome for the message yet, and nothing aborted.
    record = outcome.record
    assert (record["messages_accepted"], record["messages_rejected"]) == (0, 0)
    assert record["messages_aborted"] == 0
    assert queue.recorder.messages_deferred == 1
    assert queue.window == 6  # the session delivered something: one more


def test_a_message_delivered_on_its_first_try_counts_so(tmp_path: Path) -> None:
    outcome, queue = deliver(tmp_path, "")
    assert outcome.record["messages_accepted"] == 1 and len(queue) == 0
    assert queue.recorder.messages_first_attempt == 1
    # Latency from the intended start: the connect and 6 replies.
    assert outcome.record["message_latency"] == [pytest.approx(7 * THINK, abs=1e-9)]


def test_a_message_tried_again_counts_its_latency_from_the_first_try(tmp_path: Path) -> None:
    outcome, queue = deliver(
        tmp_path, "", attempt={"origin": 1000 - 40.0, "tries": 2, "delivered_before": 0}
    )
    assert outcome.record["messages_accepted"] == 1
    assert outcome.record["message_latency"] == [pytest.approx(40 + 7 * THINK, abs=1e-9)]
    assert queue.recorder.messages_first_attempt == 0  # not the first try


def test_a_message_delivered_before_to_some_counts_as_delivered(tmp_path: Path) -> None:
    outcome, queue = deliver(
        tmp_path,
        "",
        answers(RCPT=(550, "no", "5.1.1")),
        attempt={"origin": 990.0, "tries": 2, "delivered_before": 1},
    )
    # The recipient left is refused for good; the others took it on the first try.
    assert outcome.record["messages_accepted"] == 1 and len(queue) == 0
    assert queue.recorder.messages_first_attempt == 0


def test_a_message_refused_for_good_is_not_tried_again(tmp_path: Path) -> None:
    outcome, queue = deliver(tmp_path, "", answers(MAIL=(550, "no", "5.7.1")))
    record = outcome.record
    assert (record["messages_accepted"], record["messages_rejected"]) == (0, 1)
    assert record["message_latency"] == [] and len(queue) == 0
    assert queue.window == 5  # neither delivered nor in trouble: unchanged


def test_a_421_at_the_greeting_sends_every_message_back(tmp_path: Path) -> None:
    outcome, queue = deliver(
        tmp_path, "[session]\nmessages = 3\n", answers(EHLO=(421, "busy", "4.7.0"))
    )
    assert len(queue) == 3 and outcome.record["messages_aborted"] == 0
    assert [queue.take().index for _ in range(3)] == [0, 1, 2]
    assert queue.window == 4  # the server pushed back: one less


def test_a_4xx_before_mail_is_trouble_too(tmp_path: Path) -> None:
    auth = '[auth]\nmechanism = "PLAIN"\nusername = "u"\npassword_env = "SECRET"\n'
    outcome, queue = deliver(tmp_path, auth, answers(AUTH=(454, "try later", "4.7.0")))
    assert outcome.labels()[-2:] == ["AUTH", "QUIT"]
    assert len(queue) == 1 and queue.window == 4


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        (StepTimeout(), "timeout"),
        (ConnectionResetError(104, "reset"), "connection reset"),
    ],
)
def test_a_session_broken_mid_message_sends_it_back(
    tmp_path: Path, broken: BaseException, error: str
) -> None:
    # Read 4 awaits RCPT's reply of message 0 of 2.
    outcome, queue = deliver(tmp_path, "[session]\nmessages = 2\n", throw_at=(4, broken))
    assert outcome.record["error"] == error
    assert outcome.record["messages_aborted"] == 0  # under way, and back in the queue
    assert sorted(queue.take().index for _ in range(len(queue))) == [0, 1]
    assert queue.window == 4


def test_a_close_after_the_last_message_sends_nothing_back(tmp_path: Path) -> None:
    outcome, queue = deliver(tmp_path, "", answers(QUIT=(0, "", None)))
    assert outcome.record["error"] == "closed by server"
    assert outcome.record["messages_accepted"] == 1 and len(queue) == 0
    assert outcome.record["messages_aborted"] == 0


def test_a_protocol_error_is_not_trouble_a_sending_mta_retries(tmp_path: Path) -> None:
    # An extension asked for and not offered: the session quits before any message.
    outcome, queue = deliver(tmp_path, "[session]\nsmtputf8 = true\n")
    assert outcome.record["error"] == "protocol error"
    assert len(queue) == 0 and queue.window == 5
    assert outcome.record["messages_aborted"] == 0


def test_a_conversation_that_is_not_planned_is_not_queued(tmp_path: Path) -> None:
    queue = queue_for("")
    outcome = converse(
        tmp_path,
        MTA,
        answers(NOOP=(451, "later", None)),
        adjust=lambda s: dataclasses.replace(s, queue=queue),
        conversation=Saying(b"NOOP\r\n"),
    )
    assert outcome.session.delivery is None and len(queue) == 0


def test_every_message_delivered_leaves_none_aborted(tmp_path: Path) -> None:
    outcome, queue = deliver(tmp_path, "[session]\nmessages = 3\n")
    record = outcome.record
    assert (record["messages_accepted"], record["messages_aborted"]) == (3, 0)
    assert len(queue) == 0 and queue.recorder.messages_first_attempt == 3


def test_a_message_delivered_in_parts_is_noted_for_every_recipient_that_took_it(
    tmp_path: Path,
) -> None:
    # run --through: the first attempt delivers to one recipient, the retry to the other.
    # The message is noted once, with both, so its two arrivals downstream are two parts
    # of one delivery, not a duplicate.
    scenario = "[session]\nrecipients = 2\n"
    sends = TransitSends(tmp_path / "sends")
    sends.anchor(lambda: 0.0)
    queue = queue_for(scenario)

    def through(settings: SessionSettings) -> SessionSettings:
        return dataclasses.replace(settings, queue=queue, transit=sends)

    greylisted = answers(RCPT=[(450, "greylisted", "4.7.1"), (250, "ok", None)])
    converse(tmp_path, MTA + scenario, greylisted, adjust=through)
    assert sends.pending == 0 and not (tmp_path / "sends").read_text()  # nothing noted yet
    item = queue.take()
    assert item.delivered == 1
    parsed = parse_scenario(f'name = "machine"\nseed = 1\n{MTA}{scenario}')
    retry = PlannedConversation(
        MessageFactory(parsed, seed=1), item.plan, only=((item.index, item.envelope),)
    )
    attempt = {"origin": item.origin, "tries": 2, "delivered_before": item.delivered}
    outcome = converse(
        tmp_path, MTA + scenario, adjust=through, conversation=retry, attempt=attempt
    )
    assert outcome.record["messages_accepted"] == 1 and len(queue) == 0
    sends.close()
    (line,) = (tmp_path / "sends").read_text().splitlines()
    assert line.split()[:2] == ["0", "0"] and line.split()[6] == "2"


def test_a_retry_cut_off_before_its_transaction_keeps_what_was_delivered(tmp_path: Path) -> None:
    # The second attempt of a message delivered to one recipient of two breaks before
    # MAIL (a 421 to EHLO): it goes back to the queue still delivered to one.
    scenario = "[session]\nrecipients = 2\n"
    queue = queue_for(scenario)
    parsed = parse_scenario(f'name = "machine"\nseed = 1\n{MTA}{scenario}')
    factory = MessageFactory(parsed, seed=1)
    plan = factory.plan_session(0)
    envelope = dataclasses.replace(plan.messages[0], recipients=plan.messages[0].recipients[1:])
    retry = PlannedConversation(factory, plan, only=((0, envelope),))
    converse(
        tmp_path,
        MTA + scenario,
        answers(EHLO=(421, "busy", "4.3.2")),
        adjust=lambda s: dataclasses.replace(s, queue=queue),
        conversation=retry,
        attempt={"origin": 990.0, "tries": 2, "delivered_before": 1},
    )
    item = queue.take()
    assert (item.attempts, item.delivered, item.envelope.recipients) == (2, 1, envelope.recipients)


def noted_recipients(
    tmp_path: Path, scenario: str, answer: Any, seen: list[int] | None = None
) -> list[str]:
    """run --through without MTA-like delivery: the recipients field of each message the
    sends file notes, in order."""
    sends = TransitSends(tmp_path / "sends")
    sends.anchor(lambda: 0.0)
    converse(tmp_path, scenario, answer, adjust=lambda s: dataclasses.replace(s, transit=sends))
    sends.close()
    return [line.split()[6] for line in (tmp_path / "sends").read_text().splitlines()]


def test_a_message_is_noted_with_the_recipients_rcpt_to_accepted(tmp_path: Path) -> None:
    refused = answers(RCPT=[(250, "ok", None), (550, "no", "5.1.1"), (250, "ok", None)])
    assert noted_recipients(tmp_path, "[session]\nrecipients = 3\n", refused) == ["2"]


def test_pipelined_content_is_noted_with_its_own_messages_recipients(tmp_path: Path) -> None:
    # The first message's content goes out with the second's MAIL and RCPTs, and its
    # 250 is read after them: it keeps its own one recipient, not the second's two.
    scenario = "[session]\nmessages = 2\nrecipients = 2\npipelining = true\n"
    one_then_two = answers(RCPT=[(250, "ok", None), (450, "later", "4.2.0"), (250, "ok", None)])
    assert noted_recipients(tmp_path, scenario, one_then_two) == ["1", "2"]


def test_an_lmtp_message_is_noted_with_the_recipients_it_was_delivered_to(
    tmp_path: Path,
) -> None:
    base = answers()

    def each_recipient(event: Any, server: Any) -> bytes | None:
        if isinstance(event, MessageReceived):  # one reply per recipient, one refused
            return server.reply_each(
                [(250, "ok", "2.0.0"), (452, "full", "4.2.2"), (250, "", None)]
            )
        return base(event, server)

    scenario = '[session]\ngreeting = "LHLO"\nrecipients = 3\n'
    assert noted_recipients(tmp_path, scenario, each_recipient) == ["2"]
