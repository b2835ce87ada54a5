"""The sink injects a reply with an enhanced status code of the test's choosing
(``450 4.7.1:5%``): the flag and table forms and their mistakes, the reply on the wire,
and ``rate(4.7.1)`` measured on a real run where every RCPT gets it."""

from __future__ import annotations

import pytest
import trio

from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import FaultSpecError, ReplyFault, parse_fault_flag, parse_fault_table
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import evaluate
from smtpbench.thresholds import parse_threshold
from tests.runs import run_against, scenario_for


def test_an_enhanced_code_given_with_the_code_reads_and_writes_back() -> None:
    assert parse_fault_flag("reply", "RCPT=450 4.7.1:5%") == (
        Step.RCPT,
        ReplyFault(450, 0.05, "4.7.1"),
    )
    plan = parse_fault_table({"reply": {"RCPT": ["450 4.7.1:5%", "451:1%"]}})
    assert plan.replies[Step.RCPT] == (ReplyFault(450, 0.05, "4.7.1"), ReplyFault(451, 0.01))
    assert plan.to_table() == {"reply": {"RCPT": ["450 4.7.1:5%", "451:1%"]}}
    assert plan.to_argv() == ["--reply", "RCPT=450 4.7.1:5%", "--reply", "RCPT=451:1%"]
    assert parse_fault_table(plan.to_table()) == plan
    # The text stays the code's; only the enhanced code changes.
    assert ReplyFault(450, 1.0, "4.7.1").describe(Step.RCPT) == (
        "4.7.1",
        "Mailbox temporarily unavailable injected by smtpbench sink",
    )
    assert ReplyFault(450, 1.0).describe(Step.RCPT)[0] == "4.2.1"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("RCPT=450 5.7.1:5%", "--reply: the enhanced code 5.7.1 is of another class than 450"),
        ("RCPT=450 4.7:5%", "expected an enhanced status code such as 4.7.1 after 450, got '4.7'"),
        ("RCPT=450 4.7.1", "expected CODE:SHARE such as 451:1% (or 451 4.7.1:1%)"),
    ],
)
def test_a_wrong_enhanced_code_is_refused_by_flag(text: str, says: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_flag("reply", text)
    assert says in str(caught.value)


async def test_every_rcpt_refused_with_4_7_1_measures_as_its_share() -> None:
    async with embedded_sink(("--reply", "RCPT=451 4.7.1:100%")) as (_, port):
        with trio.fail_after(60):
            run = await run_against(scenario_for(port, rate=20, duration=1))
    rcpt = run.reply_codes(Step.RCPT)
    assert set(rcpt) == {451} and rcpt[451] > 0
    assert run.enhanced_codes(Step.RCPT) == {"4.7.1": rcpt[451]}
    total = int(run.replies.sum())
    everywhere, at_rcpt, at_mail = evaluate(
        [
            parse_threshold("rate(4.7.1) < 1%"),
            parse_threshold("rate(4.7.1, RCPT) == 100%"),
            parse_threshold("rate(4.7.1, MAIL) == 0"),
        ],
        run,
    )
    assert everywhere.measured == rcpt[451] / total and not everywhere.passed
    assert at_rcpt.measured == 1.0 and at_rcpt.passed
    assert at_mail.measured == 0.0 and at_mail.passed
