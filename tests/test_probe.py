"""smtpbench probe against the sink (open relay, relay denied, TLS), against scripted
servers for what the sink never does (VRFY that confirms, no EHLO, a refusing banner),
and the command's output and exit codes."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.probe import ProbeOptions, ProbeReport, probe
from smtpbench.servers.sink import SinkConfig, serve_sink
from tests.esmtp import Certs, make_certs

LIMIT = 30


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("probe-certs"))


async def run_cli(*argv: str) -> tuple[int, str, str]:
    with trio.fail_after(LIMIT):
        done = await trio.run_process(
            [sys.executable, "-m", "smtpbench", "probe", *argv],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {check["check"]: check["status"] for check in report["checks"]}


async def test_sink_that_takes_every_recipient_is_an_open_relay() -> None:
    async with embedded_sink() as (host, port):
        code, out, _ = await run_cli(f"{host}:{port}", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    found = statuses(report)
    assert found["open_relay"] == "fail"
    relay = next(c for c in report["checks"] if c["check"] == "open_relay")
    assert "OPEN RELAY" in relay["summary"]
    commands = [e["command"] for e in relay["exchanges"]]
    assert commands == [
        "MAIL FROM:<smtpbench-probe@example.com>",
        "RCPT TO:<relay-test@example.net>",
    ]
    assert [e["code"] for e in relay["exchanges"]] == [250, 250]
    assert found["banner"] == "warn"  # "ESMTP smtpbench sink" names the software
    assert found["starttls"] == "warn"  # no certificate, no STARTTLS
    assert found["quit"] == "pass"


async def test_sink_that_denies_relaying_passes_the_relay_check() -> None:
    # --no-auth: the sink takes AUTH in clear text, a failure of its own (auth_before_tls).
    argv = ("--relay-domain", "smtpbench.test", "--no-auth")
    async with embedded_sink(argv) as (host, port):  # the server with --target, as run takes it
        code, out, _ = await run_cli(
            "--target", f"{host}:{port}", "--json", "--rcpt", "postmaster@smtpbench.test"
        )
    report = json.loads(out)
    found = statuses(report)
    assert found["open_relay"] == "pass"
    assert code == 0 and report["ok"] is True
    relay = next(c for c in report["checks"] if c["check"] == "open_relay")
    assert relay["exchanges"][1]["code"] == 554
    assert found["dsn"] == "pass"
    ehlo = next(c for c in report["checks"] if c["check"] == "ehlo")
    assert ehlo["details"]["extensions"]["PIPELINING"]["meaning"].startswith("Takes several")


async def test_the_rich_report_explains_each_step() -> None:
    async with embedded_sink() as (host, port):
        code, out, _ = await run_cli(f"{host}:{port}")
    assert code == 1
    for words in (
        "FAIL",
        "Open relay",
        "> RCPT TO:<relay-test@example.net>",
        "< 250 2.1.5 Recipient OK",
        "Requested mail action okay",
        "names the software",
        "Takes several",
        "FAILED:",
    ):
        assert words in out, words


async def probe_sink(nursery: trio.Nursery, options: dict[str, Any], **config: Any) -> ProbeReport:
    sink = await nursery.start(serve_sink, SinkConfig(port=0, **config))
    with trio.fail_after(LIMIT):
        return await probe(ProbeOptions("127.0.0.1", sink.address[1], **options))


async def test_certificate_checks(nursery: trio.Nursery, certs: Certs, tmp_path: Path) -> None:
    tls = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
    trusted = await probe_sink(nursery, {"ca_file": certs.ca_file}, **tls)
    check = trusted.check("tls")
    assert check is not None and check.status == "pass", check
    assert check.details["protocol"].startswith("TLS")
    assert "localhost" in check.details["names"] and check.details["days_left"] > 300
    assert "trustme" in check.details["issuer"]
    after = trusted.check("ehlo_tls")
    assert after is not None and "STARTTLS" not in after.details["extensions"]

    other = make_certs(tmp_path / "other")
    untrusted = await probe_sink(nursery, {"ca_file": other.ca_file}, **tls)
    check = untrusted.check("tls")
    assert check is not None and check.status == "fail"
    assert "not accepted" in check.summary and "certificate" in check.details["verify_error"]
    assert check.details["subject"]  # shown all the same, from a second connection
    assert untrusted.failed
    assert untrusted.check("open_relay") is not None  # the other checks went on

    insecure = await probe_sink(nursery, {"verify": False}, **tls)
    check = insecure.check("tls")
    assert check is not None and check.status == "warn" and "not verified" in check.summary


async def test_implicit_tls(nursery: trio.Nursery, certs: Certs) -> None:
    report = await probe_sink(
        nursery,
        {"ca_file": certs.ca_file, "tls": "implicit", "dsn_rcpt": "a@smtpbench.test"},
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        implicit_tls=True,
        relay_domains=("smtpbench.test",),
    )
    check = report.check("tls")
    assert check is not None and check.status == "pass"
    assert report.check("starttls") is None
    auth = report.check("auth")
    assert auth is not None and auth.status == "pass"  # PLAIN under TLS is fine
    assert not report.failed


Script = Callable[[trio.SocketStream], Awaitable[None]]


async def probe_script(script: Script, **options: Any) -> ProbeReport:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, script, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(LIMIT):
            report = await probe(ProbeOptions("127.0.0.1", port, **options))
        nursery.cancel_scope.cancel()
    return report


def answering(
    answers: dict[bytes, bytes], banner: bytes = b"220 mx.example.test ESMTP\r\n"
) -> Script:
    """A server that answers each command by its first word, one line at a time."""

    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(banner)
        buffer = b""
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return
            buffer += data
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper()
                await stream.send_all(answers.get(verb, b"500 what\r\n"))
                if verb == b"QUIT":
                    return

    return script


OK = {
    b"EHLO": b"250-mx.example.test\r\n250 DSN\r\n",
    b"MAIL": b"250 ok\r\n",
    b"RCPT": b"550 5.7.1 relaying denied\r\n",
    b"RSET": b"250 ok\r\n",
    b"NOOP": b"250 ok\r\n",
    b"QUIT": b"221 bye\r\n",
}


async def test_vrfy_and_expn_that_confirm_are_warnings() -> None:
    answers = {**OK, b"VRFY": b"250 <postmaster@mx.example.test>\r\n", b"EXPN": b"250 list\r\n"}
    report = await probe_script(answering(answers))
    vrfy, expn = report.check("vrfy"), report.check("expn")
    assert vrfy is not None and vrfy.status == "warn" and "harvest" in vrfy.summary
    assert expn is not None and expn.status == "warn"
    assert report.check("banner").status == "pass"  # type: ignore[union-attr]
    assert not report.failed


async def test_helo_fallback_and_versioned_banner() -> None:
    answers = {**OK, b"EHLO": b"502 no\r\n", b"HELO": b"250 mx\r\n"}
    report = await probe_script(answering(answers, b"220 mx ESMTP Exim 4.96 ready\r\n"))
    banner = report.check("banner")
    assert banner is not None and banner.status == "warn"
    assert "Exim" in banner.summary and "4.96" in banner.summary
    helo = report.check("helo")
    assert helo is not None and helo.status == "warn"
    assert report.check("dsn").status == "info"  # type: ignore[union-attr]


async def test_refusing_banner_fails_and_stops() -> None:
    report = await probe_script(answering(OK, b"554 5.7.1 go away\r\n"))
    banner = report.check("banner")
    assert banner is not None and banner.status == "fail"
    assert report.check("ehlo") is None
    assert report.failed


async def test_nothing_listening_and_bad_flags() -> None:
    from tests.servers import free_port

    code, out, _ = await run_cli(f"127.0.0.1:{free_port()}", "--json")
    assert code == 1
    assert statuses(json.loads(out)) == {"connect": "fail"}
    code, _, err = await run_cli("127.0.0.1:x")
    assert code == 2 and "HOST[:PORT]" in err
    code, _, err = await run_cli("127.0.0.1", "--ca-file", "/nonexistent/ca.pem")
    assert code == 2 and "--ca-file" in err
    code, _, err = await run_cli("no-such-host.invalid")
    assert code == 4 and "cannot resolve" in err


def test_probe_help_lists_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "--help"], capture_output=True, text=True, check=True
    )
    assert "probe" in done.stdout


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], "no server given: HOST[:PORT] after the command, or --target HOST[:PORT]"),
        (["a:25", "--target", "b:25"], "two servers given: a:25 and --target b:25; give one"),
    ],
)
def test_probe_and_shell_take_one_server_as_they_are_told(argv: list[str], error: str) -> None:
    for command in ("probe", "shell"):
        done = subprocess.run(
            [sys.executable, "-m", "smtpbench", command, *argv],
            capture_output=True,
            text=True,
            timeout=LIMIT,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == exitcodes.BAD_CONFIGURATION, (command, done.stderr)
        assert error in done.stderr, (command, done.stderr)
