"""The probe's modern checks against servers that have each flaw and servers that do not:
a small server made to misbehave on purpose (``flawed_smtp.py``), the embedded sink, and
the private Postfix for the well-behaved side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from smtpbench.probe.model import Check, ProbeReport
from smtpbench.probe.run import ProbeOptions, probe
from tests.esmtp import Certs, make_certs
from tests.flawed_smtp import Flaws, flawed_server
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.recording_servers import sink

MINE = "me@example.com"  # the address the user names for the smuggling test
LIMIT = 60


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("probe-modern-certs"))


async def run_probe(port: int, **options: object) -> ProbeReport:
    settings = ProbeOptions(host="127.0.0.1", port=port, verify=False, **options)  # type: ignore[arg-type]
    with trio.fail_after(LIMIT):
        return await probe(settings)


def check(report: ProbeReport, key: str) -> Check:
    found = report.check(key)
    assert found is not None, [c.key for c in report.checks]
    return found


# -- SMTP smuggling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ending"),
    [("<LF>.<LF>", b"\n.\n"), ("<CR>.<CR>", b"\r.\r"), ("<LF>.<CR><LF>", b"\n.\r\n")],
)
async def test_a_server_that_takes_a_bare_ending_is_found(name: str, ending: bytes) -> None:
    with flawed_server(Flaws(endings=(ending,))) as server:
        report = await run_probe(server.port, smuggling_rcpt=MINE)
        messages = list(server.messages)
        rcpts = [c for c in server.commands if c.startswith("RCPT")]
    found = check(report, "smuggling")
    assert found.status == "fail"
    assert found.severity == "high"
    assert found.reference is not None and "CVE-2023-51764" in found.reference
    vulnerable = [v["ending"] for v in found.details["variants"] if v["vulnerable"]]
    assert vulnerable == [name]
    assert name in found.summary
    assert report.failed
    # One message per ending tried, all to the address given, the vulnerable one cut there.
    assert len(messages) == 3
    assert set(rcpts) - {"RCPT TO:<relay-test@example.net>"} == {f"RCPT TO:<{MINE}>"}
    cut = [m for m in messages if not m.rstrip().endswith(b"did not end the message there.")]
    assert len(cut) == 1 and cut[0].endswith(b"Before the line ending:")


async def test_a_server_that_takes_only_crlf_dot_crlf_passes() -> None:
    with flawed_server(Flaws()) as server:
        report = await run_probe(server.port, smuggling_rcpt=MINE)
        messages = list(server.messages)
    found = check(report, "smuggling")
    assert found.status == "pass"
    assert not any(v["vulnerable"] for v in found.details["variants"])
    assert len(messages) == 3
    for message, (_, ending) in zip(
        messages, [("", b"\n.\n"), ("", b"\r.\r"), ("", b"\n.\r\n")], strict=True
    ):
        assert ending in message  # kept as text, the message ended at <CRLF>.<CRLF>


async def test_the_sink_passes_the_smuggling_test() -> None:
    async with sink(keep_messages=True) as running:
        report = await run_probe(running.address[1], smuggling_rcpt=MINE)
        delivered = [m.recipients for m in running.messages]
    assert check(report, "smuggling").status == "pass"
    assert delivered == [(MINE,)] * 3


async def test_without_a_recipient_of_ones_own_nothing_is_sent() -> None:
    with flawed_server(Flaws(endings=(b"\n.\n",))) as server:
        report = await run_probe(server.port)
        assert server.messages == []
        assert "DATA" not in server.commands
    found = check(report, "smuggling")
    assert found.status == "info"
    assert "--smuggling-rcpt" in found.summary


# -- STARTTLS injection ---------------------------------------------------------------------


async def test_commands_sent_with_starttls_and_run_over_tls_are_found(certs: Certs) -> None:
    flaws = Flaws(starttls_keeps_buffer=True, cert=(certs.server_cert, certs.server_key))
    with flawed_server(flaws) as server:
        report = await run_probe(server.port)
        assert "XSMTPBENCH-INJECTED" in server.commands
    found = check(report, "starttls_injection")
    assert found.status == "fail"
    assert found.severity == "high"
    assert found.details["first_reply_over_tls"] == 500
    assert found.reference is not None and "CVE-2011-0411" in found.reference


async def test_commands_sent_with_starttls_thrown_away_pass(certs: Certs) -> None:
    with flawed_server(Flaws(cert=(certs.server_cert, certs.server_key))) as server:
        report = await run_probe(server.port)
        assert "XSMTPBENCH-INJECTED" not in server.commands
    assert check(report, "starttls_injection").status == "pass"


async def test_no_starttls_no_injection_test() -> None:
    with flawed_server(Flaws()) as server:
        report = await run_probe(server.port)
    assert report.check("starttls_injection") is None


# -- AUTH before TLS -----------------------------------------------------------------------


async def test_auth_taken_in_clear_text_is_found(certs: Certs) -> None:
    flaws = Flaws(auth_in_clear=True, cert=(certs.server_cert, certs.server_key))
    with flawed_server(flaws) as server:
        report = await run_probe(server.port)
        commands = list(server.commands)
    found = check(report, "auth_before_tls")
    assert found.status == "fail"
    assert found.severity == "high"
    # No credential crossed: the bare AUTH command, then the cancel.
    at = commands.index("AUTH PLAIN")
    assert commands[at + 1] == "*"
    offered = check(report, "auth")  # offered before TLS: a warning, as before
    assert (offered.status, offered.severity) == ("warn", "medium")
    assert offered.reference is not None and "RFC 4954" in offered.reference


async def test_auth_only_after_tls_passes(certs: Certs) -> None:
    with flawed_server(Flaws(cert=(certs.server_cert, certs.server_key))) as server:
        report = await run_probe(server.port)
    found = check(report, "auth_before_tls")
    assert found.status == "pass"
    assert found.exchanges[0].code == 530


# -- XCLIENT, XFORWARD, the banner ---------------------------------------------------------


async def test_xclient_and_xforward_offered_are_warnings_with_references() -> None:
    with flawed_server(Flaws(extensions=("XCLIENT NAME ADDR HELO", "XFORWARD NAME ADDR"))) as s:
        report = await run_probe(s.port)
    xclient, xforward = check(report, "xclient"), check(report, "xforward")
    assert (xclient.status, xclient.severity) == ("warn", "high")
    assert (xforward.status, xforward.severity) == ("warn", "medium")
    assert xforward.reference is not None and "XFORWARD_README" in xforward.reference


async def test_neither_offered_no_warning() -> None:
    with flawed_server(Flaws()) as server:
        report = await run_probe(server.port)
    assert report.check("xclient") is None
    assert report.check("xforward") is None


async def test_a_banner_naming_software_and_version_is_low_severity() -> None:
    with flawed_server(Flaws(banner="mx.example.com ESMTP Exim 4.96 Ready")) as server:
        report = await run_probe(server.port)
    banner = check(report, "banner")
    assert (banner.status, banner.severity) == ("warn", "low")
    assert banner.details["versions"] == ["4.96"]
    assert banner.reference is not None


async def test_a_quiet_banner_passes() -> None:
    with flawed_server(Flaws(banner="mx.example.com ESMTP")) as server:
        report = await run_probe(server.port)
    assert check(report, "banner").status == "pass"


def test_the_json_carries_severity_and_reference() -> None:
    found = Check("smuggling", "SMTP smuggling", "fail", "x", severity="high", reference="CVE")
    out = found.to_dict()
    assert out["severity"] == "high" and out["reference"] == "CVE"
    assert "severity" not in Check("noop", "NOOP", "pass", "ok").to_dict()


# -- Postfix -----------------------------------------------------------------------------


def _postfix(certs: Certs, settings: dict[str, str]) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {"someone": "secret"}, settings=settings) as instance:
        yield instance


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    # The fix for CVE-2023-51764 on Postfix 3.7 to 3.8 is this setting (3.9 normalizes).
    yield from _postfix(certs, {"smtpd_forbid_bare_newline": "yes"})


async def probe_postfix(postfix: Postfix, certs: Certs) -> ProbeReport:
    options = ProbeOptions(
        "127.0.0.1",
        postfix.port,
        ca_file=certs.ca_file,
        sni="localhost",
        smuggling_rcpt="me@rcpt0.test",
    )
    with trio.fail_after(LIMIT):
        return await probe(options)


@pytest.mark.postfix
async def test_postfix_is_the_well_behaved_side(postfix: Postfix, certs: Certs) -> None:
    report = await probe_postfix(postfix, certs)
    assert check(report, "starttls_injection").status == "pass"
    auth = check(report, "auth_before_tls")
    assert auth.status == "pass"
    assert auth.exchanges[0].code == 503  # smtpd_tls_auth_only: not enabled before TLS
    smuggling = check(report, "smuggling")
    assert smuggling.status == "pass", smuggling.details
    assert [v["vulnerable"] for v in smuggling.details["variants"]] == [False, False, False]
    assert report.check("xclient") is None and report.check("xforward") is None
    assert not report.failed, [c for c in report.checks if c.status == "fail"]


@pytest.mark.postfix
def test_postfix_without_the_bare_newline_fix_is_found(certs: Certs) -> None:
    # Postfix 3.7's default (smtpd_forbid_bare_newline = no) takes <LF>.<LF>.
    for postfix in _postfix(certs, {}):
        report = trio.run(probe_postfix, postfix, certs)
        smuggling = check(report, "smuggling")
        assert smuggling.status == "fail"
        vulnerable = {v["ending"] for v in smuggling.details["variants"] if v["vulnerable"]}
        assert vulnerable == {"<LF>.<LF>", "<LF>.<CR><LF>"}
