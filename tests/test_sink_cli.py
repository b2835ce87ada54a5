"""``smtpbench sink`` as a process: the listening line, a message, SIGTERM, exit 0."""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpbench.commands.sink import (
    add_sink_arguments,
    config_from_args,
    format_address,
    main,
    parse_listen,
)
from smtpbench.faults import Delay, ReplyFault, Stall
from smtpbench.protocol.steps import Step

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 20


def sink_process(*flags: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "smtpbench.commands.sink", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def running_sink() -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    process = sink_process("--listen", "127.0.0.1:0", "--seed", "1")
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("smtpbench sink listening on 127.0.0.1:"), first
        host, port = parse_listen(first.rsplit(" ", 1)[1])
        yield process, host, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_cleanly_on_a_signal(
    running_sink: tuple[subprocess.Popen[str], str, int], stop: signal.Signals
) -> None:
    process, host, port = running_sink
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        assert client.sendmail("a@x", ["b@y"], b"Subject: hi\r\n\r\nhello\r\n") == {}
    process.send_signal(stop)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert out.startswith("smtpbench sink stopped: 1 connections, 1 messages accepted")
    assert out.count("\n") == 1
    assert err == ""


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--delay", "DATA=soon"], "--delay"),
        (["--reply", "RCPT=250:1%"], "--reply"),
        (["--disconnect", "NOWHERE=1%"], "--disconnect"),
        (["--garbage", "EHLO"], "--garbage"),
        (["--stall", "MAIL=1s"], "--stall"),
        (["--shutdown-after", "-1"], "--shutdown-after"),
        (["--listen", "localhost"], "--listen"),
        (["--listen", "127.0.0.1:99999"], "--listen"),
        (["--max-size", "huge"], "--max-size"),
        (["--seed", "x"], "--seed"),
        (["--tls-cert", "cert.pem"], "--tls-key"),
        (["--tls-cert", "/missing/cert.pem", "--tls-key", "/missing/key.pem"], "--tls-cert"),
        (["--delay", "DATA=1ms", "--delay", "DATA=2ms"], "--delay"),
        (["--hostname", "two words"], "--hostname"),
    ],
)
def test_bad_flags_name_the_flag_and_exit_2(flags: list[str], flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smtpbench.commands.sink", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=TIMEOUT,
    )
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr
    assert result.stdout == ""


def test_listen_in_use_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--listen", f"127.0.0.1:{port}"]) == 1
    assert "--listen: cannot listen on 127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:2525", ("::1", 2525)),
        ("2526", ("127.0.0.1", 2526)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected
    assert parse_listen(format_address(*expected)) == expected


@pytest.mark.parametrize("text", ["", "host", "::1:25", "[::1]25", "[::1", "h:x", "h:65536", ":25"])
def test_parse_listen_errors(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_listen(text)


def test_flags_to_config() -> None:
    parser = argparse.ArgumentParser()
    add_sink_arguments(parser)
    args = parser.parse_args(
        [
            "--listen",
            "[::1]:0",
            "--hostname",
            "mx.test",
            "--delay",
            "DATA=50ms",
            "--reply",
            "RCPT=451:1%",
            "--reply",
            "RCPT=554:0.5%",
            "--disconnect",
            "DATA end=0.1%",
            "--garbage",
            "EHLO=1%",
            "--stall",
            "MAIL=1s@200",
            "--shutdown-after",
            "1000",
            "--seed",
            "3",
            "--no-auth",
            "--max-size",
            "10MiB",
        ]
    )
    config = config_from_args(args)
    assert (config.host, config.port, config.hostname) == ("::1", 0, "mx.test")
    assert config.seed == 3 and not config.auth and config.max_message_size == 10 * 1024**2
    faults = config.faults
    assert faults.delays == {Step.DATA: Delay(0.05, 0.05)}
    assert faults.replies == {Step.RCPT: (ReplyFault(451, 0.01), ReplyFault(554, 0.005))}
    assert faults.disconnects == {Step.DATA_END: 0.001}
    assert faults.garbage == {Step.EHLO: 0.01}
    assert faults.stalls == {Step.MAIL: Stall(1.0, 200)}
    assert faults.shutdown_after == 1000
    # and the plan's own flags give it back
    again = config_from_args(parser.parse_args(faults.to_argv()))
    assert again.faults == faults


def test_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_sink_arguments(parser)
    config = config_from_args(parser.parse_args([]))
    assert (config.host, config.port) == ("127.0.0.1", 2525)
    assert config.faults.is_empty and config.auth and config.tls_cert is None
