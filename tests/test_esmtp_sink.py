"""Load runs with ESMTP against the embedded sink in this process: TLS (STARTTLS and
implicit, verification, SNI, client certificates), AUTH with every mechanism,
PIPELINING, BDAT, 8BITMIME, SMTPUTF8, DSN, LMTP, and the errors when a server
lacks what a scenario asks for."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest
import trio

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.scenario import Scenario
from smtpbench.scenario.model import Auth, Dsn, Tls
from smtpbench.servers.sink import Sink, SinkConfig, serve_sink
from tests.esmtp import Certs, esmtp_scenario, make_certs
from tests.runs import run_against

LIMIT = 60  # seconds for any one run: a hang fails instead of blocking the suite


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def start(nursery: trio.Nursery, certs: Certs | None = None, **options: Any) -> Sink:
    options.setdefault("keep_messages", True)
    if certs is not None:
        options.setdefault("tls_cert", certs.server_cert)
        options.setdefault("tls_key", certs.server_key)
    return await nursery.start(serve_sink, SinkConfig(**options))


async def run(scenario: Scenario) -> Snapshot:
    with trio.fail_after(LIMIT):
        return await run_against(scenario)


def starttls(certs: Certs, **options: Any) -> Tls:
    return Tls(mode="starttls", ca_file=certs.ca_file, **options)


def clean(snapshot: Snapshot) -> None:
    c = snapshot.counters
    assert c.failed == 0, snapshot.failures[-1] if snapshot.failures else None
    assert c.messages_accepted == c.started * 1
    assert snapshot.errors_by_class() == {}


# -- TLS ---------------------------------------------------------------------------------


async def test_starttls_auth_pipelining_under_load(nursery: trio.Nursery, certs: Certs) -> None:
    sink = await start(nursery, certs, credentials=(("loadtest", "s3cret-pw"),))
    scenario = esmtp_scenario(
        sink.address[1],
        tls=starttls(certs),
        auth=Auth(mechanism="PLAIN", username="loadtest", password="s3cret-pw"),
        pipelining=True,
        recipients=3,
        load={"rate": 50, "duration": 2},
    )
    snapshot = await run(scenario)
    clean(snapshot)
    started = snapshot.counters.started
    assert started == 100
    # Per-command figures for the handshake and AUTH, one of each per session.
    assert snapshot.histogram(Step.TLS).count == started
    assert snapshot.histogram(Step.AUTH).count == started
    assert snapshot.reply_codes(Step.AUTH) == {235: started}
    assert snapshot.reply_codes(Step.STARTTLS) == {220: started}
    assert snapshot.reply_codes(Step.EHLO) == {250: 2 * started}  # before and after TLS
    assert snapshot.reply_codes(Step.RCPT) == {250: 3 * started}
    for step in (Step.TLS, Step.AUTH):
        assert 0 < snapshot.histogram(step).percentile(50) <= snapshot.histogram(step).maximum
    assert sink.stats.tls_sessions == started
    assert len(sink.messages) == started
    assert all(m.tls and m.authenticated and len(m.recipients) == 3 for m in sink.messages)


async def test_implicit_tls(nursery: trio.Nursery, certs: Certs) -> None:
    sink = await start(nursery, certs, implicit_tls=True)
    scenario = esmtp_scenario(
        sink.address[1], tls=Tls(mode="implicit", ca_file=certs.ca_file, sni="localhost")
    )
    snapshot = await run(scenario)
    clean(snapshot)
    assert snapshot.histogram(Step.TLS).count == snapshot.counters.started == 20
    assert snapshot.reply_codes(Step.STARTTLS) == {}
    assert all(m.tls for m in sink.messages)


async def test_untrusted_certificate_is_a_tls_error_unless_insecure(
    nursery: trio.Nursery, certs: Certs, tmp_path: Path
) -> None:
    other = make_certs(tmp_path / "other")  # a CA that did not sign the sink's certificate
    sink = await start(nursery, certs)
    port = sink.address[1]
    snapshot = await run(esmtp_scenario(port, tls=Tls(mode="starttls", ca_file=other.ca_file)))
    c = snapshot.counters
    assert c.failed == c.started == 20 and c.messages_accepted == 0
    assert snapshot.errors_by_class() == {ErrorClass.TLS: 20}
    assert int(snapshot.errors[ErrorClass.TLS, Step.TLS]) == 20
    failure = snapshot.failures[-1]
    assert failure.step == "TLS handshake" and failure.error == "TLS error"
    assert "certificate not accepted" in failure.detail
    assert "certificate verify failed" in failure.detail or "unable to get" in failure.detail
    assert [line.sent for line in failure.transcript][-1] == "STARTTLS"

    insecure = await run(esmtp_scenario(port, tls=Tls(mode="starttls", verify=False)))
    clean(insecure)
    assert insecure.histogram(Step.TLS).count == 20


async def test_server_name_is_checked_and_sent(nursery: trio.Nursery, certs: Certs) -> None:
    sink = await start(nursery, certs)
    port = sink.address[1]
    wrong = await run(esmtp_scenario(port, tls=starttls(certs, sni="mx.elsewhere.test")))
    assert wrong.errors_by_class() == {ErrorClass.TLS: 20}
    assert "mx.elsewhere.test" in wrong.failures[-1].detail
    right = await run(esmtp_scenario(port, tls=starttls(certs, sni="sink.smtpbench.test")))
    clean(right)


async def test_client_certificate(nursery: trio.Nursery, certs: Certs) -> None:
    sink = await start(nursery, certs, tls_client_ca=certs.ca_file)
    port = sink.address[1]
    with_cert = await run(esmtp_scenario(port, tls=starttls(certs, client_cert=certs.client_cert)))
    clean(with_cert)
    without = await run(esmtp_scenario(port, tls=starttls(certs)))
    assert without.counters.messages_accepted == 0
    # TLS 1.3 finishes the client's side of the handshake before the server checks the
    # certificate: the refusal may come at the first read after it. Either way it is TLS.
    assert without.errors_by_class() == {ErrorClass.TLS: 20}


async def test_starttls_not_offered_is_a_clear_error(nursery: trio.Nursery) -> None:
    sink = await start(nursery)  # no certificate: no STARTTLS
    snapshot = await run(esmtp_scenario(sink.address[1], tls=Tls(mode="starttls")))
    assert snapshot.counters.failed == 20
    assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 20}
    failure = snapshot.failures[-1]
    assert failure.step == "EHLO"
    assert "does not advertise STARTTLS" in failure.detail
    assert 'tls.mode = "starttls"' in failure.detail
    assert snapshot.reply_codes(Step.QUIT) == {221: 20}  # it still says goodbye


# -- AUTH ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
async def test_every_auth_mechanism(nursery: trio.Nursery, mechanism: str) -> None:
    sink = await start(nursery, credentials=(("alice", "Tr0ub4dor&3"),))
    port = sink.address[1]
    good = Auth(mechanism=mechanism, username="alice", password="Tr0ub4dor&3")
    snapshot = await run(esmtp_scenario(port, auth=good))
    clean(snapshot)
    assert snapshot.reply_codes(Step.AUTH) == {235: 20}
    assert all(m.authenticated for m in sink.messages)

    bad = Auth(mechanism=mechanism, username="alice", password="wrong")
    refused = await run(esmtp_scenario(port, auth=bad))
    assert refused.reply_codes(Step.AUTH) == {535: 20}
    assert refused.counters.messages_accepted == 0 and refused.counters.failed == 20
    assert refused.errors_by_class() == {ErrorClass.REPLY: 20}
    assert refused.reply_codes(Step.MAIL) == {}  # no mail without AUTH
    transcript = refused.failures[-1].transcript
    shown = " ".join(line.sent for line in transcript)
    assert f"AUTH {mechanism} (credentials hidden)" in shown
    assert "wrong" not in shown and "alice" not in shown


async def test_auth_not_offered_is_a_clear_error(nursery: trio.Nursery) -> None:
    sink = await start(nursery, auth=False)
    auth = Auth(mechanism="LOGIN", username="u", password="p")
    snapshot = await run(esmtp_scenario(sink.address[1], auth=auth))
    assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 20}
    detail = snapshot.failures[-1].detail
    assert "does not offer AUTH LOGIN" in detail and "auth.mechanism" in detail


# -- PIPELINING ------------------------------------------------------------------------------


async def test_pipelined_group_is_one_write_with_replies_in_order() -> None:
    """A bare server records what each read returns: MAIL, the RCPTs and DATA in one."""
    chunks: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        async def read() -> bytes:
            data = await stream.receive_some(65536)
            chunks.append(data)
            return data

        await stream.send_all(b"220 test ESMTP\r\n")
        await read()  # EHLO
        await stream.send_all(b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        group = await read()
        while not group.endswith(b"DATA\r\n"):
            group += await read()
        # One reply packet for the whole group, the second recipient refused.
        await stream.send_all(b"250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n")
        content = b""
        while b"\r\n.\r\n" not in content:
            content += await read()
        await stream.send_all(b"250 queued\r\n")
        # The last message's dot may come with QUIT in the same write (RFC 2920).
        if not content.endswith(b"QUIT\r\n"):
            await read()  # QUIT
        await stream.send_all(b"221 bye\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), server, 0
        )
        port = listeners[0].socket.getsockname()[1]
        scenario = esmtp_scenario(
            port, pipelining=True, recipients=3, load={"sessions": 1, "rate": 1}
        )
        snapshot = await run(scenario)
        nursery.cancel_scope.cancel()
    group = chunks[1]
    assert group.startswith(b"MAIL FROM:") and group.endswith(b"DATA\r\n")
    assert group.count(b"RCPT TO:") == 3
    assert snapshot.reply_codes(Step.RCPT) == {250: 2, 550: 1}
    assert snapshot.counters.recipients_accepted == 2
    assert snapshot.counters.messages_accepted == 1
    # The dot and QUIT go together (one write; reads may still split it).
    assert b"".join(chunks).endswith(b"\r\n.\r\nQUIT\r\n")
    # Every reply of the group was in one read: each is timed from the group's write to
    # that read, so they share one figure.
    times = {snapshot.histogram(step).maximum for step in (Step.MAIL, Step.RCPT, Step.DATA)}
    assert snapshot.histogram(Step.RCPT).minimum == snapshot.histogram(Step.RCPT).maximum
    assert len({round(t, 6) for t in times}) == 1


async def test_pipelining_refused_sender_and_recipients(nursery: trio.Nursery) -> None:
    from smtpbench.faults import parse_fault_table

    faults = parse_fault_table({"reply": {"RCPT": "550:100%"}})
    sink = await start(nursery, faults=faults)
    scenario = esmtp_scenario(sink.address[1], pipelining=True, recipients=2)
    snapshot = await run(scenario)
    c = snapshot.counters
    assert c.messages_rejected == 20 and c.messages_accepted == 0
    assert snapshot.reply_codes(Step.RCPT) == {550: 40}
    # DATA went with the group and the server refused it: no recipient.
    assert snapshot.reply_codes(Step.DATA) == {503: 20}
    assert snapshot.reply_codes(Step.QUIT) == {221: 20}


async def test_pipelining_not_advertised_sends_one_command_at_a_time(
    nursery: trio.Nursery,
) -> None:
    from tests.servers import aiosmtpd_server

    with aiosmtpd_server() as (port, handler):  # aiosmtpd does not advertise PIPELINING
        snapshot = await run(esmtp_scenario(port, pipelining=True, recipients=2))
    clean(snapshot)
    assert handler.messages == 20


# -- BDAT, 8BITMIME, SMTPUTF8, DSN, SIZE --------------------------------------------------------


@pytest.mark.parametrize("pipelining", [False, True])
async def test_chunking_sends_bdat_chunks(nursery: trio.Nursery, pipelining: bool) -> None:
    sink = await start(nursery)
    from smtpbench.scenario import SizeDistribution

    scenario = esmtp_scenario(
        sink.address[1],
        chunking=True,
        chunk_size=1000,
        size=SizeDistribution.fixed(4500),
        pipelining=pipelining,
        load={"rate": 20, "duration": 0.5},
    )
    snapshot = await run(scenario)
    clean(snapshot)
    assert snapshot.reply_codes(Step.BDAT) == {250: 4 * 10}
    assert snapshot.reply_codes(Step.DATA_END) == {250: 10}
    assert snapshot.reply_codes(Step.DATA) == {}
    assert all(m.via is Step.BDAT and m.size == 4500 for m in sink.messages)
    assert all(m.data is not None and m.data.count(b"\r\n..") == 0 for m in sink.messages)


async def test_8bitmime_smtputf8_and_dsn_parameters(nursery: trio.Nursery) -> None:
    sink = await start(nursery)
    scenario = esmtp_scenario(
        sink.address[1],
        body="8bitmime",
        smtputf8=True,
        mail_from="grüße{session}@bücher.test",
        rcpt_to="jürgen{counter}@smtpbench.test",
        subject="Grüße {session}",
        dsn=Dsn(
            notify=("SUCCESS", "FAILURE", "DELAY"), ret="HDRS", envid="id+{session}", orcpt=True
        ),
        recipients=2,
        pipelining=True,
    )
    snapshot = await run(scenario)
    clean(snapshot)
    message = sink.messages[0]
    assert message.mail_params["BODY"] == "8BITMIME"
    assert "SMTPUTF8" in message.mail_params
    assert message.mail_params["RET"] == "HDRS"
    assert message.mail_params["ENVID"].startswith("id+2B")  # xtext: + is +2B
    assert int(message.mail_params["SIZE"]) == message.size
    for address, params in zip(message.recipients, message.rcpt_params, strict=True):
        assert params["NOTIFY"] == "SUCCESS,FAILURE,DELAY"
        assert params["ORCPT"].startswith("utf-8;j\\x{FC}rgen")
        assert address.startswith("jürgen")
    assert message.data is not None
    text = message.data.decode("utf-8")  # 8-bit content arrives intact
    assert "Subject: Grüße" in text and "Content-Transfer-Encoding: 8bit" in text
    assert any(ord(ch) > 127 for ch in text.split("\r\n\r\n", 1)[1])


async def test_extensions_the_server_lacks_are_a_clear_error() -> None:
    from tests.servers import aiosmtpd_server

    with aiosmtpd_server() as (port, handler):  # no CHUNKING, no DSN, no SMTPUTF8
        chunking = await run(esmtp_scenario(port, chunking=True))
        dsn = await run(esmtp_scenario(port, dsn=Dsn(notify=("NEVER",))))
        required = await run(esmtp_scenario(port, require=("PIPELINING",)))
    assert handler.messages == 0
    for snapshot, words in (
        (chunking, "CHUNKING (session.chunking)"),
        (dsn, "DSN (session.dsn)"),
        (required, "PIPELINING (session.require)"),
    ):
        assert snapshot.counters.failed == snapshot.counters.started == 20
        assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 20}
        failure = snapshot.failures[-1]
        assert failure.step == "EHLO"
        assert failure.detail == (
            f"the server does not advertise {words}, which the scenario asks for"
        )
        assert snapshot.reply_codes(Step.MAIL) == {}
        assert snapshot.reply_codes(Step.QUIT) == {221: 20}


async def test_size_declared_and_over_the_limit_refused_at_mail(nursery: trio.Nursery) -> None:
    from smtpbench.scenario import SizeDistribution

    sink = await start(nursery, max_message_size=3000)
    scenario = esmtp_scenario(sink.address[1], size=SizeDistribution.fixed(5000), require=("SIZE",))
    snapshot = await run(scenario)
    assert snapshot.reply_codes(Step.MAIL) == {552: 20}
    assert snapshot.reply_codes(Step.DATA) == {}
    assert sink.stats.message_bytes == 0


# -- LMTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", [False, True])
async def test_lmtp_one_reply_per_recipient(nursery: trio.Nursery, chunking: bool) -> None:
    sink = await start(nursery, lmtp=True)
    scenario = esmtp_scenario(
        sink.address[1],
        greeting="LHLO",
        recipients=3,
        pipelining=True,
        chunking=chunking,
        load={"rate": 20, "duration": 0.5},
    )
    snapshot = await run(scenario)
    clean(snapshot)
    assert snapshot.reply_codes(Step.LHLO) == {250: 10}
    assert snapshot.reply_codes(Step.DATA_END) == {250: 30}
    assert snapshot.histogram(Step.DATA_END).count == 30
    assert len(sink.messages) == 10


async def test_lmtp_server_refuses_ehlo(nursery: trio.Nursery) -> None:
    sink = await start(nursery, lmtp=True)
    snapshot = await run(esmtp_scenario(sink.address[1]))
    assert snapshot.reply_codes(Step.EHLO) == {500: 20}
    assert snapshot.reply_codes(Step.HELO) == {500: 20}
    assert snapshot.counters.messages_accepted == 0


def test_scenario_fields_are_what_the_helpers_set() -> None:
    scenario = esmtp_scenario(2525, pipelining=True, recipients=2)
    assert scenario.session.pipelining and scenario.session.recipients.low == 2
    assert dataclasses.replace(scenario, tls=Tls()).tls.mode == "none"
