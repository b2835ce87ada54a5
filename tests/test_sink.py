"""The embedded sink over real sockets on 127.0.0.1: smtplib in a thread, or raw trio streams."""

from __future__ import annotations

import contextlib
import random
import smtplib
from typing import Any

import pytest
import trio

from smtpbench.protocol.steps import Step
from smtpbench.servers.sink import Sink, SinkConfig, serve_sink
from smtpbench.servers.sink_session import MAX_ERRORS

TIMEOUT = 10  # seconds for any one test: a hang fails instead of blocking the run


async def start_sink(nursery: trio.Nursery, **options: Any) -> Sink:
    options.setdefault("keep_messages", True)
    return await nursery.start(serve_sink, SinkConfig(**options))


class Raw:
    """A bare SMTP client over a trio stream: send bytes, read whole replies."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, sink: Sink, *, banner: bool = True) -> Raw:
        client = cls(await trio.open_tcp_stream(*sink.address))
        if banner:
            code, _ = await client.reply()
            assert code == 220
        return client

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError(bytes(self.buffer))
            self.buffer += data
        end = self.buffer.index(b"\r\n") + 2
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line

    async def reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        for _ in range(100):
            line = (await self.line()).decode()
            lines.append(line[4:-2])
            if line[3:4] != "-":
                return int(line[:3]), lines
        raise AssertionError("reply too long")

    async def replies(self, count: int) -> list[int]:
        return [(await self.reply())[0] for _ in range(count)]

    async def command(self, line: bytes) -> tuple[int, list[str]]:
        await self.send(line + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """True when the server closed the connection (after whatever it still sent)."""
        try:
            for _ in range(100):
                if not await self.stream.receive_some():
                    return True
        except trio.BrokenResourceError:
            return True
        return False

    async def aclose(self) -> None:
        await self.stream.aclose()


def send_with_smtplib(sink: Sink, sender: str, recipients: list[str], body: bytes) -> dict:
    host, port = sink.address
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        return client.sendmail(sender, recipients, body)


async def test_a_normal_transaction_with_smtplib(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    body = b"Subject: hello\r\n\r\n.starts with a dot\r\nbye\r\n"
    with trio.fail_after(TIMEOUT):
        refused = await trio.to_thread.run_sync(
            send_with_smtplib, sink, "a@example.test", ["b@example.test", "c@example.test"], body
        )
    assert refused == {}
    [message] = sink.messages
    assert message.mail_from == "a@example.test"
    assert message.recipients == ("b@example.test", "c@example.test")
    assert message.data == body
    assert message.size == len(body)
    assert message.via is Step.DATA and not message.tls
    stats = sink.stats
    assert stats.connections == 1 and stats.sessions_closed == 1 and stats.active == 0
    assert stats.messages_accepted == 1 and stats.recipients_accepted == 2
    assert stats.message_bytes == len(body)
    assert stats.bytes_received > len(body)
    assert stats.replies_by_code[220] == 1 and stats.replies_by_code[354] == 1
    assert stats.replies_by_code[221] == 1
    assert stats.commands["RCPT"] == 2 and stats.commands["DATA end"] == 1
    assert not stats.errors
    assert "1 messages accepted" in stats.summary()


async def test_ehlo_advertises_the_extensions(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, max_message_size=1000)

    def features() -> dict[str, str]:
        with smtplib.SMTP(*sink.address, timeout=TIMEOUT) as client:
            code, text = client.ehlo("client.test")
            assert code == 250
            assert text.splitlines()[0] == b"sink.smtpbench.test"
            return dict(client.esmtp_features)

    with trio.fail_after(TIMEOUT):
        found = await trio.to_thread.run_sync(features)
    assert found["size"] == "1000"
    for keyword in ("pipelining", "8bitmime", "smtputf8", "chunking", "dsn", "enhancedstatuscodes"):
        assert keyword in found
    assert found["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]
    assert "starttls" not in found  # no certificate given


async def test_no_auth_and_helo(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, auth=False, hostname="other.test")
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        code, lines = await client.command(b"EHLO c")
        assert code == 250 and lines[0] == "other.test"
        assert not any(line.startswith("AUTH") for line in lines)
        assert (await client.command(b"AUTH PLAIN AGEAYg=="))[0] == 502
        assert await client.command(b"HELO c") == (250, ["other.test"])
        assert (await client.command(b"HELO"))[0] == 501
        assert (await client.command(b"MAIL FROM:<a@x>"))[0] == 250


async def test_pipelined_transactions_over_a_raw_socket(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(
            b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n"
        )
        assert await client.replies(5) == [250, 250, 250, 250, 354]
        # Content, then a whole second transaction and QUIT, in one write.
        await client.send(
            b"one\r\n.\r\nMAIL FROM:<d@x>\r\nRCPT TO:<e@y>\r\nDATA\r\n"  # DATA ends this group
        )
        assert await client.replies(4) == [250, 250, 250, 354]
        await client.send(b"..two\r\n.\r\nQUIT\r\n")
        codes = await client.replies(2)
        assert codes == [250, 221]
        assert await client.closed()
    first, second = sink.messages
    assert (first.mail_from, first.recipients, first.data) == ("a@x", ("b@y", "c@y"), b"one\r\n")
    assert (second.mail_from, second.recipients, second.data) == ("d@x", ("e@y",), b".two\r\n")
    assert first.queue_id != second.queue_id


async def test_queue_id_and_enhanced_codes(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        assert await client.command(b"MAIL FROM:<a@x>") == (250, ["2.1.0 Sender OK"])
        assert await client.command(b"RCPT TO:<b@y>") == (250, ["2.1.5 Recipient OK"])
        assert (await client.command(b"DATA"))[0] == 354
        code, [text] = await client.command(b"x\r\n.")
        assert code == 250 and text == f"2.0.0 Ok: queued as {sink.messages[0].queue_id}"
        assert await client.command(b"RSET") == (250, ["2.0.0 Ok"])
        assert await client.command(b"NOOP") == (250, ["2.0.0 Ok"])
        assert (await client.command(b"VRFY x"))[0] == 252
        assert await client.command(b"QUIT") == (221, ["2.0.0 Bye"])


async def test_bdat_chunks(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
        assert await client.replies(3) == [250, 250, 250]
        await client.send(b"BDAT 6\r\nhello\nBDAT 7 LAST\r\n.world\n")
        first = await client.reply()
        assert first == (250, ["2.0.0 6 octets received"])
        code, [text] = await client.reply()
        assert code == 250 and text.startswith("2.0.0 Ok: queued as")
        assert (await client.command(b"BDAT 3 LAST\r\nabc"))[0] == 503  # no transaction
    [message] = sink.messages
    assert message.data == b"hello\n.world\n"  # BDAT content is not dot-stuffed
    assert message.via is Step.BDAT


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (b"\x00\xff\xfe garbage\r\n", [(500, "5.5.1")]),
        (b"HELLO\r\n", [(500, "5.5.1")]),
        (b"NOOP " + b"x" * 2000 + b"\r\n", [(500, "5.5.6")]),
        (b"MAIL FROM:<a@x>\r\n", [(503, "5.5.1")]),
        (b"EHLO c\r\nRCPT TO:<b@y>\r\n", [(250, None), (503, "5.5.1")]),
        (b"EHLO c\r\nMAIL FROM <a@x>\r\n", [(250, None), (501, "5.5.4")]),
        (b"EHLO c\r\nMAIL FROM:<a@x> SIZE=2000\r\n", [(250, None), (552, "5.3.4")]),
        (
            b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<>\r\n",
            [(250, None), (250, None), (501, "5.1.3")],
        ),
        (b"EHLO c\r\nAUTH DIGEST-MD5\r\n", [(250, None), (504, "5.5.4")]),
        (b"EHLO c\r\nAUTH PLAIN !!!\r\n", [(250, None), (501, "5.5.2")]),
        (b"EHLO c\r\nSTARTTLS\r\n", [(250, None), (502, "5.5.1")]),
        (b"LHLO c\r\n", [(502, "5.5.1")]),
        (b"EXPN list\r\n", [(502, "5.5.1")]),
        (b"HELP\r\n", [(214, "2.0.0")]),
    ],
    ids=lambda value: repr(value)[:30] if isinstance(value, bytes) else "",
)
async def test_bad_input_gets_the_right_error(
    nursery: trio.Nursery, script: bytes, expected: list[tuple[int, str | None]]
) -> None:
    sink = await start_sink(nursery, max_message_size=1000)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(script)
        for code, enhanced in expected:
            got, lines = await client.reply()
            assert got == code
            if enhanced is not None:
                assert lines[-1].split()[0] == enhanced
        assert await client.command(b"NOOP") == (250, ["2.0.0 Ok"])  # still talking
    assert not sink.stats.errors


async def test_message_over_the_size_limit_gets_552(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, max_message_size=100)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        assert await client.replies(4) == [250, 250, 250, 354]
        code, [text] = await client.command(b"x" * 200 + b"\r\n.")
        assert code == 552 and text.startswith("5.3.4")
        await client.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 150\r\n" + b"y" * 150)
        assert await client.replies(3) == [250, 250, 552]
        assert (await client.command(b"BDAT 1 LAST\r\nz"))[0] == 503  # the transaction failed
    assert sink.stats.messages_accepted == 0 and sink.stats.messages_rejected == 1
    assert sink.messages == []


async def test_auth_plain_and_login(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        assert await client.command(b"AUTH LOGIN") == (334, ["VXNlcm5hbWU6"])
        assert await client.command(b"dXNlcg==") == (334, ["UGFzc3dvcmQ6"])
        assert await client.command(b"cGFzcw==") == (235, ["2.7.0 Authentication successful"])
        assert (await client.command(b"AUTH PLAIN"))[0] == 503  # once per session
        second = await Raw.connect(sink)
        await second.command(b"EHLO c")
        assert await second.command(b"AUTH PLAIN") == (334, [""])
        assert (await second.command(b"*"))[0] == 501
        assert (await second.command(b"AUTH PLAIN AHUAcA=="))[0] == 235
        assert (await second.command(b"MAIL FROM:<a@x>"))[0] == 250


async def test_auth_with_smtplib(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)

    def login_and_send() -> None:
        with smtplib.SMTP(*sink.address, timeout=TIMEOUT) as client:
            client.login("user", "secret")
            client.sendmail("a@x", ["b@y"], b"hi\r\n")

    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(login_and_send)
    assert sink.messages[0].authenticated


async def test_client_disconnects_are_fine(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        assert await client.replies(4) == [250, 250, 250, 354]
        await client.send(b"half a message")
        await client.aclose()
        quick = await trio.open_tcp_stream(*sink.address)
        await quick.aclose()  # before even reading the banner
        while sink.stats.sessions_closed < 2:
            await trio.sleep(0.01)
        assert sink.stats.messages_accepted == 0
        # and it still serves
        refused = await trio.to_thread.run_sync(send_with_smtplib, sink, "a@x", ["b@y"], b"x")
    assert refused == {}
    assert not sink.stats.errors


async def test_too_many_errors_ends_the_session(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"BOGUS\r\n" * (MAX_ERRORS + 5))
        codes = await client.replies(MAX_ERRORS + 1)
        assert codes[:MAX_ERRORS] == [500] * MAX_ERRORS
        assert codes[-1] == 421
        assert await client.closed()


async def test_random_bytes_never_crash_the_sink(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery)
    rng = random.Random(1234)
    pieces = [b"\r\n", b".\r\n", b"DATA\r\n", b"BDAT 5\r\n", b"MAIL FROM:<a@x>\r\n", b"EHLO x\r\n"]
    pieces += [
        b"RCPT TO:<b@y>\r\n",
        b"AUTH LOGIN\r\n",
        b"\x00",
        b"\xff" * 600,
        b"BDAT 99999 LAST\r\n",
    ]
    with trio.fail_after(TIMEOUT):
        for _ in range(30):
            stream = await trio.open_tcp_stream(*sink.address)
            data = b"".join(
                rng.choice(pieces) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 50))
                for _ in range(rng.randint(1, 40))
            )
            # the sink may have hung up on the garbage already
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(data)
            await stream.aclose()
        while sink.stats.sessions_closed < 30:
            await trio.sleep(0.01)
        refused = await trio.to_thread.run_sync(send_with_smtplib, sink, "a@x", ["b@y"], b"x")
    assert refused == {}
    assert not sink.stats.errors


async def test_concurrent_clients_are_all_counted(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, keep_messages=False)

    async def one(index: int) -> None:
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\n")
        await client.reply()
        for _ in range(5):
            await client.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
            assert await client.replies(3) == [250, 250, 354]
            await client.send(b"Subject: %d\r\n\r\nbody\r\n.\r\n" % index)
            assert (await client.reply())[0] == 250
        await client.command(b"QUIT")
        await client.aclose()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as clients:
            for index in range(20):
                clients.start_soon(one, index)
    assert sink.stats.messages_accepted == 100
    assert sink.stats.recipients_accepted == 100
    assert sink.messages == []  # keep_messages is off


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="give both or neither"):
        SinkConfig(tls_cert="cert.pem")
    with pytest.raises(ValueError, match="port"):
        SinkConfig(port=70000)
    with pytest.raises(ValueError, match="positive"):
        SinkConfig(max_message_size=0)
    with pytest.raises(ValueError, match="one word"):
        SinkConfig(hostname="two words")
