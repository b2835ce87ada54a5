"""What the probe says about Postfix's own extensions and about TLS mistakes: XCLIENT
offered to this client is a warning with its meaning, XFORWARD is named, an untrusted
certificate suggests the flags that deal with it, and implicit TLS against a plain port
says so in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from smtpbench.probe import ProbeOptions, ProbeReport, probe
from smtpbench.servers.sink import SinkConfig, serve_sink
from tests.esmtp import Certs, make_certs
from tests.servers import postfix_binary, postfix_smtp_sink

LIMIT = 30


async def probe_sink(nursery: trio.Nursery, options: dict[str, Any], **config: Any) -> ProbeReport:
    sink = await nursery.start(serve_sink, SinkConfig(port=0, **config))
    with trio.fail_after(LIMIT):
        return await probe(ProbeOptions("127.0.0.1", sink.address[1], **options))


@pytest.mark.postfix
@pytest.mark.skipif(postfix_binary("smtp-sink") is None, reason="needs Postfix's smtp-sink")
async def test_xclient_offered_is_a_warning_and_xforward_is_named() -> None:
    with postfix_smtp_sink() as sink:  # offers XCLIENT and XFORWARD to anyone
        with trio.fail_after(LIMIT):
            report = await probe(ProbeOptions("127.0.0.1", sink.port, tls="none"))
    warning = report.check("xclient")
    assert warning is not None and warning.status == "warn"
    assert "claim any client address" in warning.summary
    assert "smtpd_authorized_xclient_hosts" in warning.summary
    ehlo = report.check("ehlo")
    assert ehlo is not None
    meanings = {k: v["meaning"] for k, v in ehlo.details["extensions"].items()}
    assert meanings["XCLIENT"].startswith("Postfix:")
    assert meanings["XFORWARD"].startswith("Postfix:")
    assert not any("does not know" in meaning for meaning in meanings.values())


async def test_a_server_without_xclient_gets_no_warning(nursery: trio.Nursery) -> None:
    report = await probe_sink(nursery, {"tls": "none"})
    assert report.check("xclient") is None


async def test_an_untrusted_certificate_suggests_ca_file_or_insecure(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    certs: Certs = make_certs(tmp_path / "server")
    other = make_certs(tmp_path / "other")
    tls = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
    report = await probe_sink(nursery, {"ca_file": other.ca_file}, **tls)
    check = report.check("tls")
    assert check is not None and check.status == "fail"
    assert "--ca-file PEM trusts its CA; --insecure looks past it" in check.summary


async def test_implicit_tls_against_a_plain_port_says_so(nursery: trio.Nursery) -> None:
    report = await probe_sink(nursery, {"tls": "implicit"})
    check = report.check("tls")
    assert check is not None and check.status == "fail"
    assert "answered in plain text, not TLS" in check.summary
    assert "WRONG_VERSION_NUMBER" not in check.summary
