"""run --through without a relay in between: the message identity and fingerprint, the
matching of send files with arrivals, the receiving sink fed by the real engine, the
flags' refusals, and the dashboard's transit line. Through a real Postfix:
test_transit_postfix.py."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import os
import queue
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smtpbench.cli import main
from smtpbench.engine.embedded import EmbeddedSink
from smtpbench.scenario import MessageFactory, default_scenario
from smtpbench.transit.identity import find_id, fingerprint, split_id
from smtpbench.transit.matching import TransitTracker
from smtpbench.transit.receiver import Arrival, Receiver
from smtpbench.transit.report import (
    TRANSIT_CSV,
    TRANSIT_JSON,
    figures_dict,
    read_transit,
    transit_line,
)
from smtpbench.transit.sends import TransitSends
from smtpbench.tui.app import DashboardApp
from smtpbench.tui.widgets.transit import TransitLine
from tests.fake_engine import FakeEngine
from tests.servers import LOOPBACK, free_port

TAG = "5f0c2a9e1b7d4c3a8e6f0a1b2c3d4e5f"


def factory_messages(count: int) -> list[tuple[int, bytes]]:
    """Real messages of the scenario's factory, tagged, one per session."""
    factory = MessageFactory(default_scenario(), seed=11, transit_tag=TAG)
    out = []
    for number in range(count):
        plan = factory.plan_session(number)
        out.append((number, factory.message_bytes(plan, 0)))
    return out


# -- identity ---------------------------------------------------------------------------


def test_messages_name_themselves_and_keep_their_planned_size() -> None:
    tagged = MessageFactory(default_scenario(), seed=11, transit_tag=TAG, clock=lambda: 0.0)
    plain = MessageFactory(default_scenario(), seed=11, clock=lambda: 0.0)
    plan_tagged, plan_plain = tagged.plan_session(4), plain.plan_session(4)
    content = tagged.message_bytes(plan_tagged, 0)
    assert find_id(content) == f"{TAG}.4.0"
    assert split_id(find_id(content) or "") == (TAG, 4, 0)
    assert find_id(plain.message_bytes(plan_plain, 0)) is None
    assert len(content) == plan_tagged.messages[0].size  # the header takes from the body


def test_fingerprint_is_the_body_only() -> None:
    (_, content), *_ = factory_messages(1)
    original = fingerprint(content)
    relayed = b"Received: from client by relay; Sat, 5 Dec 2026\r\nReturn-Path: <a@b>\r\n"
    assert fingerprint(relayed + content) == original  # headers added on the way
    assert fingerprint(content.replace(b"\r\n", b"\n")) == original  # line ends converted
    head, _, body = content.partition(b"\r\n\r\n")
    changed = head + b"\r\n\r\n" + body.replace(b"e", b"E", 1)
    assert fingerprint(changed).digest != original.digest
    assert fingerprint(changed).size == original.size
    assert fingerprint(head + b"\r\n\r\n" + body + b"added line\r\n").size > original.size


# -- matching ---------------------------------------------------------------------------


def arrival_of(content: bytes, at: float, recipients: int = 1) -> Arrival:
    print_ = fingerprint(content)
    return Arrival(at, find_id(content), print_.size, print_.digest, recipients)


def test_a_message_delivered_in_parts_is_no_duplicate_until_it_comes_again(
    tmp_path: Path,
) -> None:
    # Taken for 3 recipients; the relay delivers it to 2, then to the last one (a split
    # by destination, or a recipient deferred and tried again), then once more to one.
    (number, content), (other, second) = factory_messages(2)
    sends = TransitSends(tmp_path / "sends")
    sends.anchor(lambda: 100.0)
    anchor = time.time() - 100.0
    sends.prepare(number, 0, content)
    sends.accepted(number, 0, 100.0, 100.1, 3)
    sends.prepare(other, 0, second)
    sends.accepted(other, 0, 100.0, 100.1, 1)
    sends.close()
    tracker = TransitTracker(TAG, [tmp_path / "sends"], "here", anchor + 100)
    arrivals = [
        arrival_of(content, anchor + 101.0, recipients=2),
        arrival_of(content, anchor + 102.0, recipients=1),
        arrival_of(second, anchor + 101.5, recipients=1),
    ]
    tracker.update(arrivals)
    figures = tracker.figures(final=True)
    assert (figures.arrived, figures.not_arrived, figures.duplicates) == (2, 0, 0)
    assert figures.transit_max == pytest.approx(1.5, abs=0.01)  # timed by its first part
    tracker.update([*arrivals, arrival_of(content, anchor + 103.0, recipients=1)])
    assert tracker.figures(final=True).duplicates == 1
    # The sends file says how many recipients took each message.
    fields = [line.split() for line in (tmp_path / "sends").read_text().splitlines()]
    assert [row[6] for row in fields] == ["3", "1"]
    # A line without it (an engine of an earlier version) counts one recipient.
    (tmp_path / "older").write_text(" ".join(fields[0][:6]) + "\n")
    older = TransitTracker(TAG, [tmp_path / "older"], "here", anchor + 100)
    older.update(arrivals[:2])
    assert (older.figures(final=True).arrived, older.figures(final=True).duplicates) == (1, 1)


def test_sends_and_arrivals_are_matched(tmp_path: Path) -> None:
    messages = factory_messages(6)
    sends = TransitSends(tmp_path / "sends")
    clock = [100.0]
    sends.anchor(lambda: clock[0])  # engine time 100.0 is wall time now
    anchor = time.time() - 100.0
    for number, content in messages:
        sends.prepare(number, 0, content)
    # 0..4 accepted (intended start at engine time 100 + n, 250 a tenth later), 5 refused.
    for number, _ in messages[:5]:
        sends.accepted(number, 0, 100.0 + number, 100.1 + number, 1)
    sends.refused(5, 0)
    tracker = TransitTracker(TAG, [tmp_path / "sends", tmp_path / "sends.0"], "here", anchor + 100)
    arrivals: list[Arrival] = []
    # Message 0 arrives before its send line is written: it waits for it.
    arrivals.append(arrival_of(messages[0][1], anchor + 100.5))
    tracker.update(arrivals)
    assert tracker.figures().arrived == 0
    sends.close()
    arrivals += [
        arrival_of(messages[1][1], anchor + 102.0),
        arrival_of(messages[1][1], anchor + 103.0),  # a duplicate
        arrival_of(messages[2][1].replace(b"the", b"THE", 1), anchor + 104.0),  # altered
        arrival_of(messages[5][1], anchor + 105.5),  # refused here, arrived anyway
        Arrival(anchor + 106.0, "another-run.1.0", 10, "00"),
        Arrival(anchor + 106.0, None, 10, "00"),
    ]
    tracker.update(arrivals)
    figures = tracker.figures(final=True)
    assert (figures.accepted, figures.arrived, figures.not_arrived) == (5, 3, 2)
    assert (figures.duplicates, figures.altered) == (1, 1)
    assert (figures.unexpected, figures.foreign) == (1, 2)
    # Transit from the intended start: 0.5 s, 1.0 s (first arrival), 2.0 s; nearest rank.
    assert figures.transit[0] == pytest.approx(1.0, rel=0.01)
    assert figures.transit_max == pytest.approx(2.0, rel=0.01)
    assert figures.to_accept[0] == pytest.approx(0.1, rel=0.01)
    # By the second of the 250: 0..4 each in its own second, the arrived ones with a p50.
    rows = {row.second: row for row in figures.seconds}
    assert [rows[s].accepted for s in range(5)] == [1, 1, 1, 1, 1]
    assert [rows[s].arrived for s in range(5)] == [1, 1, 1, 0, 0]
    assert math.isnan(rows[4].transit_p50)
    line = transit_line(figures)
    assert "3/5 arrived" in line and "2 not arrived" in line and "1 altered" in line


# -- the receiving sink -----------------------------------------------------------------


def test_receiver_notes_what_arrives_and_refuses_a_taken_port() -> None:
    receiver = Receiver(LOOPBACK, 0)
    host, port = receiver.start()
    try:
        (_, content), *_ = factory_messages(1)
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail("a@smtpbench.test", ["b@transit.test"], content)
            client.sendmail("a@smtpbench.test", ["c@transit.test", "d@transit.test"], content)
        deadline = time.monotonic() + 10
        while len(receiver.arrivals) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        arrival, again = receiver.arrivals
        assert (arrival.recipients, again.recipients) == (1, 2)  # the RCPT TOs each brought
        assert arrival.ident == f"{TAG}.0.0"
        assert (arrival.size, arrival.digest) == (
            fingerprint(content).size,
            fingerprint(content).digest,
        )
        taken = Receiver(LOOPBACK, port)
        with pytest.raises(Exception, match=rf"--through 127.0.0.1:{port}: cannot listen there"):
            taken.start()
    finally:
        receiver.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_straight_to_the_receiver_every_message_arrives(
    tmp_path: Path, workers: int, capsys: pytest.CaptureFixture
) -> None:
    """No relay in between (the target is the receiving sink itself): each accepted
    message arrives once, unaltered, just after its 250."""
    port = free_port()
    code = main(
        [
            "run",
            "--target",
            f"{LOOPBACK}:{port}",
            "--through",
            f"{LOOPBACK}:{port}",
            "--rate",
            "40",
            "--sessions",
            "60",
            "--seed",
            "5",
            "--workers",
            str(workers),
            "--headless",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (folder,) = tmp_path.iterdir()
    figures = json.loads((folder / TRANSIT_JSON).read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert figures["accepted"] == 60
    assert figures["arrived"] == 60
    assert (figures["not_arrived"], figures["duplicates"], figures["altered"]) == (0, 0, 0)
    assert figures["foreign"] == 0 and figures["unexpected"] == 0
    # The receiver notes a message as it answers 250, before the client reads that reply.
    transit, accepted = figures["transit_seconds"], figures["to_accept_seconds"]
    assert transit["p50"] <= accepted["p50"] + 0.05
    rows = (folder / TRANSIT_CSV).read_text().splitlines()
    assert rows[0].startswith("second,accepted,arrived")
    assert sum(int(row.split(",")[1]) for row in rows[1:]) == 60
    assert summary  # the usual results are there too
    # The end-of-run summary and `smtpbench report` show the same transit figures.
    said = " ".join(capsys.readouterr().out.split())
    assert "Transit through the server" in said and "arrived downstream │ 60" in said
    stored = read_transit(folder)
    assert stored is not None and figures_dict(stored) == figures
    assert main(["report", str(folder)]) == 0
    reported = " ".join(capsys.readouterr().out.split())
    assert "arrived downstream │ 60" in reported and "not arrived │ 0" in reported
    # And the other formats carry them too: the same figures as transit.json.
    assert main(["report", str(folder), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["transit"] == figures
    assert main(["report", str(folder), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_name = {row["command"]: row for row in table if row["view"] == "transit"}
    assert list(by_name) == [
        "intended start to 250",
        "intended start to arrival",
        "250 to arrival (queue)",
    ]
    arrival = by_name["intended start to arrival"]
    assert arrival["count"] == "60"
    assert float(arrival["p99_s"]) == pytest.approx(transit["p99"])
    assert float(arrival["max_s"]) == pytest.approx(transit["max"])
    assert arrival["p99.9_s"] == "" and by_name["250 to arrival (queue)"]["max_s"] == ""
    assert main(["report", str(folder), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert f"**Transit through the server to {LOOPBACK}:{port}" in markdown
    assert "| arrived downstream | 60 |" in markdown and "| not arrived | 0 |" in markdown
    assert "| of arrived messages | p50 | p90 | p99 | max |" in markdown


# -- flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--through", "127.0.0.1:2525"], "--through: needs --target"),
        (["--target", "127.0.0.1:25", "--through", "127.0.0.1:99999"], "--through: the port"),
        (["--target", "127.0.0.1:25", "--through-drain", "5s"], "--through-drain: only with"),
        (
            ["--target", "127.0.0.1:25", "--through", "127.0.0.1:2525", "--through-drain", "x"],
            "--through-drain:",
        ),
    ],
)
def test_bad_flags_say_which(argv: list[str], said: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "--headless", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert said in " ".join(err.split())
    assert "Traceback" not in err


def test_taken_through_address_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    receiver = Receiver(LOOPBACK, 0)
    _, port = receiver.start()
    try:
        code = main(
            [
                "run",
                "--target",
                f"{LOOPBACK}:{free_port()}",
                "--through",
                f"{LOOPBACK}:{port}",
                "--sessions",
                "1",
                "--workers",
                "1",
                "--headless",
                "--out",
                str(tmp_path),
            ]
        )
    finally:
        receiver.stop()
    err = " ".join(capsys.readouterr().err.split())
    assert code == 4  # TARGET_UNUSABLE, as an address that cannot be used
    assert f"--through 127.0.0.1:{port}: cannot listen there" in err
    assert "Traceback" not in err


# -- the dashboard ----------------------------------------------------------------------


def test_dashboard_shows_the_transit_line(tmp_path: Path) -> None:
    messages = factory_messages(3)
    sends = TransitSends(tmp_path / "sends")
    sends.anchor(lambda: 0.0)
    for number, content in messages:
        sends.prepare(number, 0, content)
        sends.accepted(number, 0, 0.0, 0.01, 1)
    sends.close()
    start = time.time()
    tracker = TransitTracker(TAG, [tmp_path / "sends"], "127.0.0.1:2525", start)
    tracker.update([arrival_of(messages[0][1], start + 0.25)])

    def line() -> str:
        return transit_line(tracker.figures())

    async def drive() -> str:
        app = DashboardApp(FakeEngine(), transit=line)
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.pause(0.3)
            return " ".join(content.plain for content in app.query_one(TransitLine).lines)

    shown = asyncio.run(drive())
    assert "Through transit 1/3 arrived" in shown
    assert "2 waiting" in shown
    plain = DashboardApp(FakeEngine())

    async def without() -> int:
        async with plain.run_test(size=(140, 45)) as pilot:
            await pilot.pause(0.1)
            return len(plain.query(TransitLine))

    assert asyncio.run(without()) == 0


# -- a server that relays nothing ------------------------------------------------------


def test_nothing_relayed_leaves_every_message_not_arrived_and_ctrl_c_ends_the_wait(
    tmp_path: Path,
) -> None:
    """The target is a sink that keeps every message (as a server with a stopped
    downstream would): all accepted, none arrived; the drain waits, and Ctrl-C cuts the
    wait short with the results written."""
    sink = EmbeddedSink.start()
    lines: queue.Queue[str] = queue.Queue()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smtpbench",
                "run",
                "--target",
                f"{sink.host}:{sink.port}",
                "--through",
                f"{LOOPBACK}:{free_port()}",
                "--sessions",
                "10",
                "--rate",
                "50",
                "--workers",
                "1",
                "--headless",
                "--through-drain",
                "10m",
                "--out",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert process.stdout is not None
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
        reader.start()
        said: list[str] = []
        deadline = time.monotonic() + 60
        while not any("waiting up to" in line for line in said):
            assert time.monotonic() < deadline, said
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=0.5))
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        reader.join(10)
    finally:
        sink.stop()
    while not lines.empty():
        said.append(lines.get())
    output = " ".join("".join(said).split())
    assert code == 0, output
    assert "waiting up to 10m00s for 10 messages" in output
    assert "cut short" in output
    (folder,) = tmp_path.iterdir()
    figures = json.loads((folder / TRANSIT_JSON).read_text())
    assert (figures["accepted"], figures["arrived"], figures["not_arrived"]) == (10, 0, 10)
