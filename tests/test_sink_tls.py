"""STARTTLS on the sink, with certificates from trustme."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from smtpbench.servers.sink import Sink, SinkConfig, make_ssl_context
from tests.test_sink import TIMEOUT, Raw, start_sink


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    return str(cert), str(key)


async def tls_sink(nursery: trio.Nursery, cert_files: tuple[str, str]) -> Sink:
    cert, key = cert_files
    return await start_sink(nursery, tls_cert=cert, tls_key=key)


async def test_starttls_with_smtplib(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[str, str]
) -> None:
    sink = await tls_sink(nursery, cert_files)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def send() -> tuple[bool, bool]:
        with smtplib.SMTP(*sink.address, timeout=TIMEOUT) as client:
            client.ehlo()
            offered_before = client.has_extn("starttls")
            client.starttls(context=context)
            client.ehlo()
            offered_after = client.has_extn("starttls")
            client.login("user", "secret")
            client.sendmail("a@x", ["b@y"], b"Subject: secret\r\n\r\nhi\r\n")
            return offered_before, offered_after

    with trio.fail_after(TIMEOUT):
        offered_before, offered_after = await trio.to_thread.run_sync(send)
    assert offered_before and not offered_after
    [message] = sink.messages
    assert message.tls and message.authenticated
    assert message.data == b"Subject: secret\r\n\r\nhi\r\n"
    assert sink.stats.tls_sessions == 1 and sink.stats.tls_failures == 0


async def test_commands_pipelined_after_starttls_are_dropped(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[str, str]
) -> None:
    sink = await tls_sink(nursery, cert_files)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        # A man in the middle's injected command rides along in clear text.
        await client.send(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
        assert (await client.reply())[0] == 220
        tls = trio.SSLStream(client.stream, context, server_hostname="localhost")
        await tls.do_handshake()
        secure = Raw(tls)  # type: ignore[arg-type]
        await secure.send(b"NOOP\r\n")
        assert (await secure.reply())[0] == 250  # not the reply to the injected MAIL
        assert (await secure.command(b"MAIL FROM:<a@x>"))[0] == 503  # EHLO again first
        assert (await secure.command(b"EHLO c"))[0] == 250
        assert (await secure.command(b"STARTTLS"))[0] == 503


async def test_failed_handshake_is_counted_and_harmless(
    nursery: trio.Nursery, cert_files: tuple[str, str]
) -> None:
    sink = await tls_sink(nursery, cert_files)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        assert (await client.command(b"STARTTLS"))[0] == 220
        await client.send(b"this is not a TLS client hello\r\n" * 10)
        assert await client.closed()
        while sink.stats.sessions_closed < 1:
            await trio.sleep(0.01)
        other = await Raw.connect(sink)
        assert (await other.command(b"EHLO c"))[0] == 250
    assert sink.stats.tls_failures == 1
    assert not sink.stats.errors


def test_bad_certificate_files_fail_early(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(OSError):
        make_ssl_context(SinkConfig(tls_cert=missing, tls_key=missing))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        make_ssl_context(SinkConfig(tls_cert=str(junk), tls_key=str(junk)))
    assert make_ssl_context(SinkConfig()) is None
