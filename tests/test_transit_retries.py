"""run --through with a client that tries deferred messages again ([delivery] mode =
"mta"): a message greylisted at its first attempt and delivered by a later one is noted
once, under the identity its first attempt gave it, and timed from that attempt's
intended start, so transit counts the whole delay a sender sees. Our sink greylists
and keeps what it accepts, and stands for the downstream server too."""

from __future__ import annotations

import time
from pathlib import Path

from smtpbench.engine.process import EngineJob, build_run
from smtpbench.engine.transport import resolve
from smtpbench.faults import parse_fault_table
from smtpbench.run.prepare import run_info
from smtpbench.scenario import parse_scenario, scenario_to_toml
from smtpbench.transit.identity import find_id, fingerprint
from smtpbench.transit.matching import TransitTracker
from smtpbench.transit.receiver import Arrival
from smtpbench.transit.sends import TransitSends
from tests.recording_servers import sink
from tests.servers import LOOPBACK

SESSIONS = 12
GREYLIST = 0.3  # seconds before a retry is let through


def scenario_text(port: int) -> str:
    return f"""
name = "greylisted"
seed = 4
[target]
host = "{LOOPBACK}"
port = {port}
[load]
rate = 40
sessions = {SESSIONS}
[delivery]
mode = "mta"
first_retry = "200ms"
max_retry = "1s"
max_age = "30s"
"""


async def test_a_message_delivered_on_a_later_attempt_is_matched_once(tmp_path: Path) -> None:
    faults = parse_fault_table({"greylist": f"{GREYLIST * 1000:g}ms"})
    sends_file = tmp_path / "sends"
    async with sink(faults=faults, keep_messages=True) as server:
        port = server.address[1]
        scenario = parse_scenario(scenario_text(port))
        address = await resolve(LOOPBACK, port)
        info = run_info(scenario, str(address), 4)
        job = EngineJob(scenario_to_toml(scenario), address, 4, info)
        began = time.time()
        sends = TransitSends(sends_file)
        run, close = build_run(job, scenario, sends)
        try:
            final = await run.run()
        finally:
            close()
        kept = list(server.messages)
    # Each deferred attempt let go of what it had prepared: nothing is kept at the end.
    assert sends.pending == 0
    counters = final.counters
    assert counters.messages_accepted == SESSIONS
    assert counters.messages_first_attempt == 0 and counters.messages_deferred >= SESSIONS
    # Every accepted message is one line of the sends file, by its first identity.
    lines = sends_file.read_text().splitlines()
    assert len(lines) == SESSIONS
    assert sorted((int(f[0]), int(f[1])) for f in (line.split() for line in lines)) == [
        (number, 0) for number in range(SESSIONS)
    ]
    # The sink kept each message once: as arrivals downstream, each matches its send.
    now = time.time()
    arrivals = []
    for message in kept:
        assert message.data is not None
        print_ = fingerprint(message.data)
        arrivals.append(Arrival(now, find_id(message.data), print_.size, print_.digest))
    tracker = TransitTracker(info.run_id, [sends_file], "downstream", began)
    tracker.update(arrivals)
    figures = tracker.figures(final=True)
    assert (figures.accepted, figures.arrived, figures.not_arrived) == (SESSIONS, SESSIONS, 0)
    assert (figures.duplicates, figures.altered, figures.unexpected) == (0, 0, 0)
    # Timed from the first attempt's intended start: past the greylist, at every rank.
    assert min(figures.to_accept) >= GREYLIST


async def test_a_message_refused_for_good_is_let_go_of(tmp_path: Path) -> None:
    """Every recipient refused (550): nothing is noted, and nothing prepared is kept."""
    faults = parse_fault_table({"reply": {"RCPT": "550:100%"}})
    sends_file = tmp_path / "sends"
    async with sink(faults=faults) as server:
        port = server.address[1]
        scenario = parse_scenario(scenario_text(port).replace(f"= {SESSIONS}", "= 4"))
        address = await resolve(LOOPBACK, port)
        info = run_info(scenario, str(address), 4)
        sends = TransitSends(sends_file)
        run, close = build_run(
            EngineJob(scenario_to_toml(scenario), address, 4, info), scenario, sends
        )
        try:
            final = await run.run()
        finally:
            close()
    assert final.counters.messages_rejected == 4 and final.counters.messages_deferred == 0
    assert sends_file.read_text() == ""
    assert sends.pending == 0
