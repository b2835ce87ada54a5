"""smtpbench probe against the private Postfix: relaying denied, the certificate trusted,
AUTH only after TLS, VRFY disabled, DSN taken; and the command's exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
import trio

from smtpbench.probe import ProbeOptions, probe
from tests.esmtp import Certs, make_certs
from tests.postfix import HOSTNAME, Postfix, private_postfix, skip_without_sasl

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("probe-postfix-certs"))


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {"someone": "secret"}) as instance:
        yield instance


async def test_postfix_with_relaying_denied_passes(postfix: Postfix, certs: Certs) -> None:
    options = ProbeOptions("127.0.0.1", postfix.port, ca_file=certs.ca_file, sni="localhost")
    with trio.fail_after(60):
        report = await probe(options)
    found = {check.key: check for check in report.checks}
    assert not report.failed, [c for c in report.checks if c.status == "fail"]
    assert found["open_relay"].status == "pass"
    rcpt = found["open_relay"].exchanges[1]
    assert rcpt.code == 554 and "Relay access denied" in " ".join(rcpt.reply)
    assert found["banner"].status == "pass"  # "$myhostname ESMTP": no software named
    assert found["starttls"].status == "pass"
    assert found["tls"].status == "pass"
    assert found["tls"].details["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert found["auth"].status == "pass" and "once TLS is on" in found["auth"].summary
    assert found["auth"].details["after_tls"] == ["CRAM-MD5", "LOGIN", "PLAIN"]
    assert found["vrfy"].status == "pass"  # disable_vrfy_command = yes
    assert found["vrfy"].exchanges[0].code == 502
    assert found["expn"].status == "pass"
    assert found["dsn"].status == "pass"
    assert f"postmaster@{HOSTNAME}" in (found["dsn"].exchanges[1].command or "")
    assert "CHUNKING" in found["ehlo"].details["extensions"]
    assert found["quit"].status == "pass"


async def test_probe_command_exit_code_against_postfix(postfix: Postfix, certs: Certs) -> None:
    command = [
        sys.executable,
        "-m",
        "smtpbench",
        "probe",
        f"127.0.0.1:{postfix.port}",
        "--ca-file",
        certs.ca_file,
        "--sni",
        "localhost",
        "--json",
    ]
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, check=False)
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["counts"]["fail"] == 0


async def test_implicit_tls_port(
    postfix: Postfix, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = make_certs(tmp_path_factory.mktemp("untrusted"))
    options = ProbeOptions(
        "127.0.0.1", postfix.smtps_port, tls="implicit", ca_file=other.ca_file, sni="localhost"
    )
    with trio.fail_after(60):
        report = await probe(options)
    tls = report.check("tls")
    assert tls is not None and tls.status == "fail"  # signed by a CA we were not told of
    assert "not accepted" in tls.summary and tls.details.get("subject") is not None
    relay = report.check("open_relay")
    assert relay is not None and relay.status == "pass"
