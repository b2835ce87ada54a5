"""ESMTP in the sans-IO layer: SASL encodings against the RFCs' own examples, the client
state machine's AUTH and LMTP rules, ESMTP parameter encodings, the server's LMTP replies."""

from __future__ import annotations

import base64

import pytest

from smtpbench.protocol import sasl
from smtpbench.protocol.client import ClientConnection, Response, State
from smtpbench.protocol.commands import orcpt, xtext
from smtpbench.protocol.errors import LocalProtocolError, RemoteProtocolError
from smtpbench.protocol.server import MessageReceived, ServerConnection
from smtpbench.protocol.steps import Step


def test_plain_is_rfc_4616() -> None:
    mechanism = sasl.client_mechanism("plain", "tim", "tanstaaftanstaaf")
    assert base64.b64decode(mechanism.initial()) == b"\x00tim\x00tanstaaftanstaaf"
    assert sasl.auth_command(mechanism).startswith(b"AUTH PLAIN AHRpbQB0YW5z")
    assert sasl.decode_plain(mechanism.initial()) == ("", "tim", "tanstaaftanstaaf")


def test_cram_md5_is_rfc_2195() -> None:
    # The example of RFC 2195 section 2.
    mechanism = sasl.client_mechanism("CRAM-MD5", "tim", "tanstaaftanstaaf")
    assert mechanism.initial() is None
    assert sasl.auth_command(mechanism) == b"AUTH CRAM-MD5\r\n"
    challenge = base64.b64encode(b"<1896.697170952@postoffice.reston.mci.net>").decode()
    answer = mechanism.respond(challenge)
    assert answer == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
    user, digest = sasl.cram_md5_user(answer)
    assert user == "tim"
    assert sasl.cram_md5_verify(
        b"<1896.697170952@postoffice.reston.mci.net>", "tanstaaftanstaaf", digest
    )
    assert not sasl.cram_md5_verify(b"<other@x>", "tanstaaftanstaaf", digest)


def test_login_answers_in_order() -> None:
    mechanism = sasl.client_mechanism("LOGIN", "user", "pass")
    assert mechanism.respond("VXNlcm5hbWU6") == "dXNlcg=="
    assert mechanism.respond("UGFzc3dvcmQ6") == "cGFzcw=="
    with pytest.raises(RemoteProtocolError):
        mechanism.respond("x")


def test_xoauth2_format_and_error_step() -> None:
    mechanism = sasl.client_mechanism("XOAUTH2", "someuser@example.com", "ya29.vF9dft4qmTc2")
    raw = base64.b64decode(mechanism.initial())
    assert raw == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2\x01\x01"
    assert sasl.decode_xoauth2(mechanism.initial()) == ("someuser@example.com", "ya29.vF9dft4qmTc2")
    assert mechanism.respond("eyJzdGF0dXMiOiI0MDEifQ==") == ""  # the empty line after an error


def test_unknown_mechanism_and_line_breaks_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="unknown AUTH mechanism"):
        sasl.client_mechanism("DIGEST-MD5", "u", "p")
    with pytest.raises(LocalProtocolError, match="password"):
        sasl.client_mechanism("PLAIN", "u", "p\r\nMAIL FROM:<x>")


def test_redaction_never_shows_credentials() -> None:
    line = sasl.auth_command(sasl.client_mechanism("PLAIN", "alice", "hunter2"))
    assert sasl.redact_auth_line(line) == "AUTH PLAIN (credentials hidden)"
    assert sasl.redact_auth_line(b"YWxpY2U=\r\n") == "(SASL response hidden)"


def test_xtext_and_orcpt() -> None:
    assert xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"
    assert orcpt("user@example.org") == "rfc822;user@example.org"
    assert orcpt("jürgen@example.org") == "utf-8;j\\x{FC}rgen@example.org"


def _greeted(ehlo: bytes) -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n")
    assert isinstance(conn.next_event(), Response)
    conn.ehlo("c")
    conn.receive_data(ehlo)
    assert isinstance(conn.next_event(), Response)
    return conn


def test_client_auth_exchange() -> None:
    conn = _greeted(b"250-x\r\n250 AUTH LOGIN\r\n")
    conn.auth(b"AUTH LOGIN\r\n")
    with pytest.raises(LocalProtocolError):
        conn.mail("a@x")  # AUTH ends a group, and no PIPELINING anyway
    conn.receive_data(b"334 VXNlcm5hbWU6\r\n")
    event = conn.next_event()
    assert isinstance(event, Response) and event.step is Step.AUTH and event.reply.code == 334
    assert conn.state is State.AUTH
    with pytest.raises(LocalProtocolError):
        conn.auth(b"AUTH PLAIN =\r\n")
    assert conn.auth_response("dXNlcg==") == b"dXNlcg==\r\n"
    conn.receive_data(b"334 UGFzc3dvcmQ6\r\n")
    conn.next_event()
    conn.auth_response("cGFzcw==")
    conn.receive_data(b"235 2.7.0 ok\r\n")
    event = conn.next_event()
    assert isinstance(event, Response) and event.reply.code == 235
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError):
        conn.auth_response("x")  # no challenge outstanding


def test_client_auth_refused_returns_to_ready() -> None:
    conn = _greeted(b"250-x\r\n250 AUTH PLAIN\r\n")
    conn.auth(b"AUTH PLAIN AHUAcA==\r\n")
    conn.receive_data(b"535 5.7.8 no\r\n")
    conn.next_event()
    assert conn.state is State.READY


def test_client_lmtp_expects_a_reply_per_accepted_recipient() -> None:
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n")
    conn.next_event()
    conn.lhlo("c")
    conn.receive_data(b"250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    conn.next_event()
    assert conn.lmtp
    conn.mail("a@x")
    for name in ("b@y", "c@y", "d@y"):
        conn.rcpt(name)
    # The last chunk's replies depend on the RCPT replies: not before them.
    with pytest.raises(LocalProtocolError, match="every RCPT reply"):
        conn.bdat(b"hi\r\n", last=True)
    conn.data()
    conn.receive_data(b"250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n")
    steps = [conn.next_event().step for _ in range(5)]  # type: ignore[union-attr]
    assert steps == [Step.MAIL, Step.RCPT, Step.RCPT, Step.RCPT, Step.DATA]
    conn.message(b"Subject: x\r\n\r\nhi\r\n")
    assert conn.pending == (Step.DATA_END, Step.DATA_END)  # two recipients were accepted
    conn.receive_data(b"250 2.0.0 delivered\r\n452 4.2.2 over quota\r\n")
    codes = [conn.next_event().reply.code for _ in range(2)]  # type: ignore[union-attr]
    assert codes == [250, 452]
    assert conn.state is State.READY


def test_server_lmtp_replies_each_recipient() -> None:
    server = ServerConnection()
    server.reply(220, "hi")
    server.receive_data(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
    for code in (250, 250, 250, 250, 354):
        server.next_event()
        server.reply(code)
    server.receive_data(b"hi\r\n.\r\n")
    assert isinstance(server.next_event(), MessageReceived)
    out = server.reply_each([(250, "ok", "2.0.0"), (550, "no", "5.1.1")])
    assert out == b"250 2.0.0 ok\r\n550 5.1.1 no\r\n"
    with pytest.raises(LocalProtocolError):
        server.reply_each([(250, "ok", None)])  # nothing is pending any more
