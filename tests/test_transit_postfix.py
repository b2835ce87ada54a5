"""run --through a real Postfix: the private Postfix relays transit.test to the receiving
sink with its smtp client; what smtpbench matched is checked against Postfix's log."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from smtpbench.cli import main
from smtpbench.transit.report import TRANSIT_JSON
from tests.esmtp import Certs, make_certs
from tests.postfix import TRANSIT_DOMAIN, Postfix, private_postfix, skip_without_sasl
from tests.servers import LOOPBACK, free_port

pytestmark = pytest.mark.postfix

SCENARIO = """\
name = "transit"
[load]
rate = "{rate}/s"
sessions = {sessions}
[session]
mail_from = "sender{{session}}@smtpbench.test"
rcpt_to = "user{{counter}}@{domain}"
size = "4KiB"
"""
_SENT = re.compile(
    r"postfix/smtp\[\d+\]: \w+: to=<[^>]+@transit\.test>.* delay=([\d.]+),.*status=sent"
)
_DEFERRED = re.compile(r"postfix/\w+\[\d+\]: \w+: to=<[^>]+@transit\.test>.*status=deferred")
USERS = {"loadtest": "pf-S3cret-9"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    skip_without_sasl()
    return make_certs(tmp_path_factory.mktemp("postfix-certs"))


def run_through(
    postfix: Postfix,
    receiver: int,
    out: Path,
    *,
    sessions: int,
    rate: int = 20,
    extra: tuple[str, ...] = (),
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """``smtpbench run --target POSTFIX --through 127.0.0.1:RECEIVER``; the exit code, the
    transit figures and the run's summary."""
    scenario = out / "transit.toml"
    scenario.write_text(SCENARIO.format(rate=rate, sessions=sessions, domain=TRANSIT_DOMAIN))
    results = out / "results"
    code = main(
        [
            "run",
            str(scenario),
            "--target",
            f"{LOOPBACK}:{postfix.port}",
            "--through",
            f"{LOOPBACK}:{receiver}",
            "--headless",
            "--out",
            str(results),
            *extra,
        ]
    )
    (folder,) = results.iterdir()
    figures = json.loads((folder / TRANSIT_JSON).read_text())
    summary = json.loads((folder / "summary.json").read_text())
    return code, figures, summary


def postfix_delays(postfix: Postfix) -> list[float]:
    """Postfix's own ``delay=`` of every message it relayed to the receiving sink: from its
    arrival in Postfix to the end of the delivery."""
    return [float(m.group(1)) for line in postfix.log_lines() if (m := _SENT.search(line))]


def rounded_down(delay: float) -> float:
    """The least a delay Postfix logged can have been: it logs two significant digits
    (2.1, 0.06), to the hundredth at most."""
    return delay - max(0.005, delay * 0.05)


def accepted(summary: dict[str, Any]) -> int:
    return int(summary["counters"]["messages_accepted"])


@pytest.mark.parametrize("workers", [1, 2])
def test_every_accepted_message_is_matched_downstream(
    certs: Certs, tmp_path: Path, workers: int
) -> None:
    receiver = free_port()
    with private_postfix(certs, USERS, relay_to=receiver) as postfix:
        code, figures, summary = run_through(
            postfix, receiver, tmp_path, sessions=40, extra=("--workers", str(workers))
        )
        delays = postfix_delays(postfix)
    assert code == 0
    assert accepted(summary) == 40 == figures["accepted"]
    assert figures["arrived"] == 40 == len(delays)  # Postfix relayed each one, once
    assert figures["not_arrived"] == 0
    assert figures["duplicates"] == 0
    # Postfix adds a Received header on the way: not an alteration of the message.
    assert figures["altered"] == 0
    assert figures["foreign"] == 0
    # Transit runs from the intended start, before Postfix had the message: never less
    # than Postfix's own delay (as far as its rounding tells).
    assert figures["transit_seconds"]["p50"] >= rounded_down(statistics.median(delays))
    assert figures["transit_seconds"]["p50"] >= figures["to_accept_seconds"]["p50"] - 0.01


def test_transit_shows_the_queue_delay(certs: Certs, tmp_path: Path) -> None:
    """smtp_destination_rate_delay = 1s: Postfix relays one message a second, so the k-th
    waits about k-1 seconds in its queue; the transit percentiles say so, as Postfix's
    log does."""
    receiver = free_port()
    with private_postfix(certs, USERS, relay_to=receiver, rate_delay=1) as postfix:
        code, figures, summary = run_through(
            postfix, receiver, tmp_path, sessions=5, rate=50, extra=("--workers", "1")
        )
        delays = sorted(postfix_delays(postfix))
    assert code == 0
    assert figures["arrived"] == 5 == accepted(summary) == len(delays)
    # Sent within 0.1 s; delivered a second apart: at least three waited 1.9 s or more.
    assert figures["transit_seconds"]["p50"] >= 1.9
    assert figures["queue_seconds"]["p50"] >= 1.8
    assert figures["transit_seconds"]["max"] >= 3.9
    # The same queue delay as Postfix logged for the median message.
    median = statistics.median(delays)
    assert median >= 1.9
    assert figures["transit_seconds"]["p50"] >= rounded_down(median)
    assert figures["transit_seconds"]["p50"] == pytest.approx(median, abs=1.0)
    # The series by the second of the 250: all five accepted in the first second.
    assert sum(row["accepted"] for row in figures["seconds"]) == 5
    assert sum(row["arrived"] for row in figures["seconds"]) == 5


def test_deferred_transport_leaves_messages_not_arrived(certs: Certs, tmp_path: Path) -> None:
    receiver = free_port()
    with private_postfix(certs, USERS, relay_to=receiver, defer=True) as postfix:
        code, figures, summary = run_through(
            postfix,
            receiver,
            tmp_path,
            sessions=10,
            extra=("--workers", "1", "--through-drain", "1s"),
        )
        deferred = postfix.wait_for_log(_DEFERRED.pattern, 10)
    assert code == 0  # the server under test accepted every message: the run itself passed
    assert accepted(summary) == 10 == figures["accepted"]
    assert figures["arrived"] == 0
    assert figures["not_arrived"] == 10
    assert figures["drained_seconds"] >= 1.0  # the whole drain period was waited
    assert deferred == 10  # Postfix says why: "deferred transport"


def test_a_body_changed_on_the_way_is_altered(certs: Certs, tmp_path: Path) -> None:
    """A body_checks REPLACE rewrites every line that ends with a full stop (the generated
    text has many): each message arrives, altered."""
    receiver = free_port()
    rules = "/^(.*)\\.$/ REPLACE ${1}!\n"
    with private_postfix(certs, USERS, relay_to=receiver, body_checks=rules) as postfix:
        code, figures, summary = run_through(
            postfix, receiver, tmp_path, sessions=10, extra=("--workers", "1")
        )
        delays = postfix_delays(postfix)
    assert code == 0
    assert figures["accepted"] == 10 == accepted(summary) == len(delays)
    assert figures["arrived"] == 10
    assert figures["altered"] == 10
    assert figures["not_arrived"] == 0
