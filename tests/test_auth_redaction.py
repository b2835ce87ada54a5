"""AUTH is redacted in recordings by what a server takes as AUTH, not by a stricter
reading: each spelling is sent to the private Postfix through the recording proxy (TLS
terminated there, since Postfix offers AUTH only after STARTTLS), and the same
conversations, in clear, go through the capture importer. No secret may be written."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from smtpbench.recording.pcap import import_pcap
from smtpbench.servers.proxy import ProxyConfig, serve_proxy
from tests.esmtp import Certs, make_certs
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.servers import LOOPBACK
from tests.test_pcap_import import TappedFlow, packets, write_capture

USER, PASSWORD = "redact-me", "Pw-never-in-a-file-7"
PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
USER64 = base64.b64encode(USER.encode()).decode()
PASSWORD64 = base64.b64encode(PASSWORD.encode()).decode()
SECRETS = (PASSWORD, PLAIN, PASSWORD64, USER64)
TIMEOUT = 20

# What the client says: a first line, then a line for each 334 that comes back (CRAM-MD5's
# is computed from the challenge). Tabs, case, doubled spaces and initial responses: every
# way a server may read AUTH.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "plain, initial response": (f"AUTH PLAIN {PLAIN}",),
    "tabs": (f"AUTH\tPLAIN\t{PLAIN}",),
    "lower case": (f"auth plain {PLAIN}",),
    "mixed case, two spaces": (f"AuTh PlAiN  {PLAIN}",),
    "tab and space": (f"AUTH PLAIN\t {PLAIN}",),
    "trailing tab": (f"AUTH PLAIN {PLAIN}\t",),
    "plain after 334": ("AUTH PLAIN", PLAIN),
    "tab, plain after 334": ("AUTH\tPLAIN", PLAIN),
    "login": ("AUTH LOGIN", USER64, PASSWORD64),
    "login, initial response": (f"AUTH LOGIN {USER64}", PASSWORD64),
    "login, tabs": (f"auth\tlogin\t{USER64}", PASSWORD64),
    "cram-md5": ("AUTH CRAM-MD5", "cram"),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("redaction-certs"))


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {USER: PASSWORD}) as instance:
        yield instance


class Client:
    """A bare client that notes every byte each way after TLS began, as a capture would."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""
        self.chunks: list[tuple[float, str, bytes]] = []
        self.noting = False

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, f"closed after {self.buffer!r}"
                if self.noting:
                    self.chunks.append((trio.current_time(), "s", data))
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), lines[-1][4:]

    async def say(self, line: str) -> tuple[int, str]:
        data = line.encode() + b"\r\n"
        if self.noting:
            self.chunks.append((trio.current_time(), "c", data))
        await self.stream.send_all(data)
        return await self.reply()


def cram_response(challenge64: str) -> str:
    digest = hmac.new(PASSWORD.encode(), base64.b64decode(challenge64), hashlib.md5).hexdigest()
    return base64.b64encode(f"{USER} {digest}".encode()).decode()


async def converse(port: int, certs: Certs, lines: tuple[str, ...]) -> tuple[list[int], Client]:
    plain = await trio.open_tcp_stream(LOOPBACK, port)
    client = Client(plain)
    assert (await client.reply())[0] == 220
    assert (await client.say("EHLO client.test"))[0] == 250
    assert (await client.say("STARTTLS"))[0] == 220
    context = ssl.create_default_context(cafile=certs.ca_file)
    client.stream = trio.SSLStream(plain, context, server_hostname="localhost")
    await client.stream.do_handshake()
    client.noting = True
    assert (await client.say("EHLO client.test"))[0] == 250
    codes = []
    code, text = await client.say(lines[0])
    codes.append(code)
    for line in lines[1:]:
        if code != 334:
            break
        code, text = await client.say(cram_response(text) if line == "cram" else line)
        codes.append(code)
    await client.say("QUIT")
    await client.stream.aclose()
    return codes, client


async def test_every_spelling_postfix_takes_as_auth_is_redacted(
    postfix: Postfix, certs: Certs, tmp_path: Path
) -> None:
    out = tmp_path / "through-proxy.jsonl"
    config = ProxyConfig(
        LOOPBACK,
        postfix.port,
        out,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        upstream_ca=certs.ca_file,
    )
    answers: dict[str, list[int]] = {}
    flows: list[TappedFlow] = []
    with trio.fail_after(TIMEOUT * len(SPELLINGS)):
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(serve_proxy, config)
            for name, lines in SPELLINGS.items():
                codes, client = await converse(proxy.address[1], certs, lines)
                answers[name] = codes
                flow = TappedFlow(("127.0.0.2", 40000 + len(flows)), (LOOPBACK, 25), 0.0)
                flow.chunks = [(0.0, "s", b"220 capture.test ESMTP\r\n"), *client.chunks]
                flows.append(flow)
            while proxy.stats.sessions_recorded < len(SPELLINGS):
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    # Postfix took each as AUTH: it authenticated, or asked for more (and then did).
    for name, codes in answers.items():
        assert codes[-1] == 235, (name, codes)
    text = out.read_text()
    assert text.count('"redacted":true') >= len(SPELLINGS)
    for secret in SECRETS:
        assert secret not in text
    # The same conversations as a capture of clear text, through the importer.
    capture = tmp_path / "clear.pcap"
    write_capture(capture, [frame for flow in flows for frame in packets(flow)])
    imported = tmp_path / "imported.jsonl"
    from smtpbench.recording.writer import write_recording

    result = import_pcap(capture)
    assert len(result.recording.sessions) == len(SPELLINGS)
    write_recording(imported, result.recording)
    text = imported.read_text()
    for secret in SECRETS:
        assert secret not in text
