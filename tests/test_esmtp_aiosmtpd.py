"""ESMTP against aiosmtpd, a third-party server: STARTTLS with AUTH and SMTPUTF8, and
LMTP with a different reply for each recipient."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import AuthResult, LoginPassword

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.steps import Step
from smtpbench.scenario.model import Auth, Tls
from tests.esmtp import Certs, esmtp_scenario, make_certs
from tests.runs import run_against
from tests.servers import LOOPBACK, free_port

LIMIT = 60


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("aiosmtpd-certs"))


@dataclass
class Collecting:
    """Keeps what aiosmtpd accepted; in LMTP, refuses recipients at r1.test."""

    envelopes: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: Any, envelope: Any) -> str:
        with self.lock:
            self.envelopes.append((envelope, session.authenticated, session.ssl is not None))
        if isinstance(server, LMTP):
            return "\r\n".join(
                "550 5.1.1 no such mailbox" if rcpt.endswith("@r1.test") else "250 2.0.0 ok"
                for rcpt in envelope.rcpt_tos
            )
        return "250 2.0.0 OK"


def authenticator(
    server: object, session: object, envelope: object, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bob", b"pw-42")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd says 535


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def aiosmtpd(
    controller: type[Controller] = Controller, **options: Any
) -> Iterator[tuple[int, Collecting]]:
    handler = Collecting()
    port = free_port()
    server = controller(handler, hostname=LOOPBACK, port=port, **options)
    server.start()
    try:
        yield port, handler
    finally:
        server.stop()


async def test_starttls_auth_and_smtputf8(certs: Certs) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    with aiosmtpd(
        tls_context=context,
        authenticator=authenticator,
        auth_require_tls=True,
        enable_SMTPUTF8=True,
        server_hostname="aiosmtpd.test",
    ) as (port, handler):
        scenario = esmtp_scenario(
            port,
            tls=Tls(mode="starttls", ca_file=certs.ca_file),
            auth=Auth(mechanism="LOGIN", username="bob", password="pw-42"),
            smtputf8=True,
            rcpt_to="josé{counter}@smtpbench.test",
            recipients=2,
            pipelining=True,  # aiosmtpd does not advertise it: one command at a time
        )
        with trio.fail_after(LIMIT):
            snapshot = await run_against(scenario)
        wrong = esmtp_scenario(
            port,
            tls=Tls(mode="starttls", ca_file=certs.ca_file),
            auth=Auth(mechanism="PLAIN", username="bob", password="nope"),
        )
        with trio.fail_after(LIMIT):
            refused = await run_against(wrong)
    c = snapshot.counters
    assert c.failed == 0, snapshot.failures[-1] if snapshot.failures else None
    assert c.messages_accepted == c.started == 20
    assert snapshot.histogram(Step.TLS).count == 20
    assert snapshot.reply_codes(Step.AUTH) == {235: 20}
    assert len(handler.envelopes) == 20
    envelope, authenticated, tls = handler.envelopes[0]
    assert authenticated and tls
    assert envelope.rcpt_tos[0].startswith("josé")
    assert "SMTPUTF8" in envelope.mail_options
    assert refused.reply_codes(Step.AUTH) == {535: 20}, refused.failures[-1]
    assert refused.errors_by_class() == {ErrorClass.REPLY: 20}


async def test_lmtp_reply_per_recipient() -> None:
    with aiosmtpd(LmtpController) as (port, handler):
        scenario = esmtp_scenario(
            port,
            greeting="LHLO",
            recipients=3,
            rcpt_to="user{counter}@r{rcpt}.test",  # r1.test is refused after the data
            load={"rate": 10, "duration": 1},
        )
        with trio.fail_after(LIMIT):
            snapshot = await run_against(scenario)
    assert snapshot.reply_codes(Step.LHLO) == {250: 10}
    assert snapshot.reply_codes(Step.RCPT) == {250: 30}
    # One reply per recipient after the final dot, in RCPT order.
    assert snapshot.reply_codes(Step.DATA_END) == {250: 20, 550: 10}
    assert snapshot.histogram(Step.DATA_END).count == 30
    assert snapshot.counters.messages_accepted == 10  # taken for at least one recipient
    assert snapshot.errors_by_class() == {ErrorClass.REPLY: 10}
    assert len(handler.envelopes) == 10
