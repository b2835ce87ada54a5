"""The fault matrix: `run`, `replay`, `record` and `sink`, each against every misbehaviour
this machine can produce on loopback (silence, a close, a reset, an endless reply,
garbage, a drop in DATA, a stall, a server killed and restarted, a client killed).

Each case checks what an operator relies on: the command ends on time, prints no
traceback, writes its results (or recording), and what the server counted agrees
with what the command reports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from smtpbench.recording import read_recording
from tests.commands import TRACEBACK, read_until, smtpbench, start_smtpbench
from tests.misbehaving import BEHAVIOURS, misbehaving

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "scenarios" / "recordings" / "default-sink.jsonl"
ON_TIME = 45.0  # seconds: 2 s of load, 2 s of grace, 1 s timeouts, process start-up
STEPS = ("connect", "banner", "EHLO", "MAIL", "RCPT", "DATA", "DATA end", "QUIT")


def scenario(tmp_path: Path, port: int, rate: int = 10, duration: str = "2s") -> Path:
    path = tmp_path / "faults.toml"
    timeouts = "\n".join(f'"{step}" = "1s"' for step in STEPS)
    path.write_text(
        'name = "faults"\n'
        f'[target]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[load]\nrate = {rate}\nduration = "{duration}"\ngrace = "2s"\n'
        f"[timeouts]\n{timeouts}\n"
    )
    return path


def only_folder(out: Path):  # type: ignore[no-untyped-def]
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    return read_results(folder)


def timed(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = smtpbench(*args, timeout=ON_TIME + 30)
    return done, time.monotonic() - started


def _port(line: str) -> int:
    return int(line.split(" listening on ")[1].split(",")[0].split()[0].rsplit(":", 1)[1])


def _stats(line: str) -> dict[str, int]:
    """``smtpbench sink stopped: 12 connections, 10 messages accepted, ...`` as numbers."""
    found = {}
    for part in line.split(": ", 1)[1].split(", "):
        number, _, what = part.partition(" ")
        if number.isdigit():
            found[what.split(" (")[0]] = int(number)
    return found


def stop_sink(sink: subprocess.Popen[str]) -> dict[str, int]:
    sink.send_signal(signal.SIGTERM)
    out, errors = sink.communicate(timeout=30)
    assert sink.returncode == 0 and TRACEBACK not in errors, errors
    [line] = [line for line in out.splitlines() if "sink stopped:" in line]
    return _stats(line)


# -- run and replay against a misbehaving server ------------------------------------------


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_run_against_a_misbehaving_server(tmp_path: Path, behaviour: str) -> None:
    with misbehaving(behaviour) as server:
        done, took = timed(
            "run", "--headless", str(scenario(tmp_path, server.port)), "--out", str(tmp_path)
        )
    assert took < ON_TIME
    assert TRACEBACK not in done.stderr + done.stdout
    assert done.returncode in (exitcodes.OK, exitcodes.THRESHOLDS_FAILED), done.stderr
    result = only_folder(tmp_path)
    counters = result.counters
    assert counters.started == server.connections > 0
    assert counters.failed == counters.started  # nothing this server does is a success
    assert counters.messages_accepted == 0
    assert result.errors.sum() > 0 or result.replies.sum() > 0


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_replay_against_a_misbehaving_server(tmp_path: Path, behaviour: str) -> None:
    with misbehaving(behaviour) as server:
        done, took = timed(
            "replay", str(RECORDING), "--target", f"127.0.0.1:{server.port}", "--rate", "20",
            "--grace", "1s", "--headless", "--out", str(tmp_path),
        )  # fmt: skip
    assert took < ON_TIME
    assert TRACEBACK not in done.stderr + done.stdout
    result = only_folder(tmp_path)
    assert result.counters.started == server.connections > 0
    assert result.counters.messages_accepted == 0
    # Sessions the server left hanging were cut after the grace asked for.
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert 'grace = "1s"' in (folder / "scenario.toml").read_text()


def test_run_against_a_sink_with_faults_counts_what_the_sink_counts(tmp_path: Path) -> None:
    """Drops in DATA, a stall, garbage and refusals, from the real sink: its own counts
    of connections and accepted messages equal the run's summary."""
    sink = start_smtpbench(
        "sink", "--listen", "127.0.0.1:0", "--seed", "3",
        "--disconnect", "DATA end=10%", "--garbage", "RCPT=5%", "--stall", "MAIL=1.5s@10",
        "--reply", "RCPT=451:10%",
    )  # fmt: skip
    try:
        port = _port(read_until(sink, "listening on"))
        done, took = timed(
            "run", "--headless", str(scenario(tmp_path, port, rate=30)), "--out", str(tmp_path)
        )
    finally:
        stats = stop_sink(sink)
    assert took < ON_TIME and TRACEBACK not in done.stderr
    counters = only_folder(tmp_path).counters
    assert stats["connections"] == counters.started > 0
    assert stats["messages accepted"] == counters.messages_accepted
    assert counters.failed > 0


def test_run_against_a_server_killed_and_restarted(tmp_path: Path) -> None:
    first = start_smtpbench("sink", "--listen", "127.0.0.1:0")
    port = _port(read_until(first, "listening on"))
    run = start_smtpbench(
        "run", "--headless", str(scenario(tmp_path, port, rate=20, duration="4s")),
        "--out", str(tmp_path), "--progress-interval", "0.5s",
    )  # fmt: skip
    second = None
    try:
        read_until(run, "started")
        time.sleep(0.5)
        first.kill()
        first.communicate(timeout=10)
        time.sleep(0.5)
        second = start_smtpbench("sink", "--listen", f"127.0.0.1:{port}")
        read_until(second, "listening on")
        _, errors = run.communicate(timeout=ON_TIME)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=10)
        stats = stop_sink(second) if second is not None else {}
        if first.poll() is None:
            first.kill()
    assert TRACEBACK not in errors
    counters = only_folder(tmp_path).counters
    assert counters.failed > 0  # sessions while nothing listened
    assert 0 < stats["messages accepted"] <= counters.messages_accepted


# -- record in front of a misbehaving server ----------------------------------------------


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_record_in_front_of_a_misbehaving_server(tmp_path: Path, behaviour: str) -> None:
    out = tmp_path / "faults.jsonl"
    with misbehaving(behaviour) as server:
        record = start_smtpbench(
            "record", "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{server.port}",
            "--out", str(out),
        )  # fmt: skip
        try:
            port = _port(read_until(record, "listening on"))
            done, took = timed(
                "run", "--headless", str(scenario(tmp_path, port)), "--out", str(tmp_path)
            )
            assert took < ON_TIME and TRACEBACK not in done.stderr
        finally:
            record.send_signal(signal.SIGTERM)
            said, errors = record.communicate(timeout=30)
        connections = server.connections
    assert record.returncode == 0 and TRACEBACK not in errors, errors
    sessions = read_recording(out).sessions
    started = only_folder(tmp_path).counters.started
    assert started == connections > 0
    # A server that resets at once may fail the proxy's connect: that client is answered
    # 421 and counted, not recorded.
    stats = _stats(said.strip().splitlines()[-1])
    assert stats["connections"] == started
    assert stats["sessions recorded"] == len(sessions)
    assert len(sessions) + stats.get("could not reach the server", 0) == started


# -- the sink against misbehaving clients -------------------------------------------------


def _client(port: int, behaviour: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        if behaviour == "silence":
            assert conn.recv(512).startswith(b"220")
            assert b"421" in conn.recv(512)  # the idle timeout
        elif behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        elif behaviour == "garbage":
            conn.sendall(b"\x00\xff\xfe garbage\r\n" * 60)
        elif behaviour == "endless":
            conn.settimeout(2)
            try:
                for _ in range(64):
                    conn.sendall(b"x" * 65536)  # one command line with no end
            except OSError:
                pass
        elif behaviour == "drop in DATA":
            conn.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n")
            time.sleep(0.2)
            conn.sendall(b"DATA\r\n")
            time.sleep(0.2)
            conn.sendall(b"Subject: cut\r\n\r\nhalf a mess")
        elif behaviour == "stall":
            conn.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b")  # and nothing more
            deadline = time.monotonic() + 10
            while b"421" not in conn.recv(4096) and time.monotonic() < deadline:
                pass
        # "close": leave at once


def _normal_client(port: int) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@b.test", ["c@d.test"], b"Subject: fine\r\n\r\nstill served\r\n")


@pytest.mark.parametrize(
    "behaviour", ["silence", "close", "reset", "garbage", "endless", "drop in DATA", "stall"]
)
def test_the_sink_against_a_misbehaving_client(behaviour: str) -> None:
    sink = start_smtpbench(
        "sink", "--listen", "127.0.0.1:0", "--idle-timeout", "1s", "--command-timeout", "1s"
    )
    try:
        port = _port(read_until(sink, "listening on"))
        started = time.monotonic()
        for _ in range(3):
            _client(port, behaviour)
        _normal_client(port)
        assert time.monotonic() - started < ON_TIME
    finally:
        stats = stop_sink(sink)
    assert stats["connections"] == 4
    assert stats["messages accepted"] == 1


def test_the_sink_when_a_run_against_it_is_killed(tmp_path: Path) -> None:
    sink = start_smtpbench("sink", "--listen", "127.0.0.1:0", "--idle-timeout", "2s")
    try:
        port = _port(read_until(sink, "listening on"))
        run = start_smtpbench(
            "run", "--headless", str(scenario(tmp_path, port, rate=50, duration="30s")),
            "--out", str(tmp_path), "--progress-interval", "0.5s",
        )  # fmt: skip
        read_until(run, "started")
        time.sleep(0.5)
        run.kill()
        run.communicate(timeout=10)
        _normal_client(port)
    finally:
        stats = stop_sink(sink)
    assert stats["connections"] > 1
    assert stats.get("session errors", 0) == 0
    assert json.dumps(stats)  # a summary line came out at all
