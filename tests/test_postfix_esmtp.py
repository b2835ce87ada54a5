"""Load runs through a private Postfix (smtpd, Cyrus SASL, discard transport): every
reply smtpbench counts is checked against what Postfix logged."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.scenario import Scenario, SizeDistribution
from smtpbench.scenario.model import Auth, Dsn, Tls
from tests.esmtp import Certs, esmtp_scenario, make_certs
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.runs import run_against

pytestmark = pytest.mark.postfix

USER, PASSWORD = "loadtest", "pf-S3cret-9"
LIMIT = 120
# Postfix's names in "disconnect from ... ehlo=2 starttls=1 ..." for smtpbench's steps.
POSTFIX_COMMANDS = {
    "ehlo": (Step.EHLO,),
    "helo": (Step.HELO,),
    "starttls": (Step.STARTTLS,),
    "auth": (Step.AUTH,),
    "mail": (Step.MAIL,),
    "rcpt": (Step.RCPT,),
    "data": (Step.DATA,),  # once per message; the final dot is not counted apart
    "bdat": (Step.BDAT, Step.DATA_END),  # every chunk, the last one included
    "rset": (Step.RSET,),
    "noop": (Step.NOOP,),
    "quit": (Step.QUIT,),
}
_REJECT = re.compile(r"(?:NOQUEUE|[0-9A-F]+): reject: RCPT from \S+: (\d{3}) ")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("postfix-certs"))


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {USER: PASSWORD}) as instance:
        yield instance


def secure(certs: Certs, mode: str = "starttls") -> Tls:
    return Tls(mode=mode, ca_file=certs.ca_file)  # type: ignore[arg-type]


def login(mechanism: str = "PLAIN", password: str = PASSWORD) -> Auth:
    return Auth(mechanism=mechanism, username=USER, password=password)


async def run_logged(postfix: Postfix, scenario: Scenario) -> tuple[Snapshot, int]:
    """The run, and where Postfix's log stood before it; waits for the log to catch up."""
    since = postfix.log_size()
    with trio.fail_after(LIMIT):
        snapshot = await run_against(scenario)
    await trio.to_thread.run_sync(postfix.wait_for_disconnects, snapshot.counters.started, since)
    return snapshot, since


def assert_replies_match_the_log(
    snapshot: Snapshot, postfix: Postfix, since: int, *, chunking: bool = False
) -> None:
    """Each command Postfix counted (accepted/sent) is what smtpbench counted, and each
    recipient Postfix refused was refused with the code smtpbench counted."""
    logged = postfix.disconnects(since)
    assert logged.sessions == snapshot.counters.started
    for command, steps in POSTFIX_COMMANDS.items():
        codes: dict[int, int] = {}
        if command == "bdat" and not chunking:
            steps = ()  # the DATA end replies answer the final dot of data
        for step in steps:
            for code, count in snapshot.reply_codes(step).items():
                codes[code] = codes.get(code, 0) + count
        sent = sum(codes.values())
        positive = sum(count for code, count in codes.items() if code < 400)
        assert logged.get(command) == (positive, sent), command
    rejected: dict[int, int] = {}
    for line in postfix.log_lines(since):
        match = _REJECT.search(line)
        if match:
            rejected[int(match.group(1))] = rejected.get(int(match.group(1)), 0) + 1
    refused = {code: n for code, n in snapshot.reply_codes(Step.RCPT).items() if code >= 400}
    assert rejected == refused


def delivered(postfix: Postfix, since: int, count: int) -> int:
    """Recipients the discard transport took, once the log shows ``count`` of them."""
    return postfix.wait_for_log(r"postfix/discard\[\d+\]: .*status=sent", count, since)


async def test_starttls_auth_pipelining_load_with_refused_recipients(
    postfix: Postfix, certs: Certs
) -> None:
    scenario = esmtp_scenario(
        postfix.port,
        tls=secure(certs),
        auth=login("PLAIN"),
        pipelining=True,
        recipients=3,
        rcpt_to="user{counter}@rcpt{rcpt}.test",  # rcpt1: 550, rcpt2: 554
        load={"rate": 25, "duration": 2},
    )
    scenario = scenario.with_success(Step.RCPT, frozenset({250, 550, 554}))
    snapshot, since = await run_logged(postfix, scenario)
    c = snapshot.counters
    started = c.started
    assert started == 50
    assert c.failed == 0, snapshot.failures[-1] if snapshot.failures else None
    assert c.messages_accepted == started
    assert snapshot.reply_codes(Step.RCPT) == {250: started, 550: started, 554: started}
    assert snapshot.reply_codes(Step.AUTH) == {235: started}
    # Per-command figures for the handshake and AUTH, one of each per session.
    assert snapshot.histogram(Step.TLS).count == started
    assert snapshot.histogram(Step.AUTH).count == started
    assert snapshot.histogram(Step.TLS).percentile(50) > 0
    assert_replies_match_the_log(snapshot, postfix, since)
    assert await trio.to_thread.run_sync(delivered, postfix, since, started) == started
    auth_lines = [line for line in postfix.log_lines(since) if "sasl_method=PLAIN" in line]
    assert len(auth_lines) == started


async def test_implicit_tls_login_and_bdat(postfix: Postfix, certs: Certs) -> None:
    scenario = esmtp_scenario(
        postfix.smtps_port,
        tls=Tls(mode="implicit", ca_file=certs.ca_file, sni="localhost"),
        auth=login("LOGIN"),
        chunking=True,
        chunk_size=1500,
        size=SizeDistribution.fixed(4000),
        pipelining=True,
        load={"rate": 20, "duration": 1},
    )
    snapshot, since = await run_logged(postfix, scenario)
    c = snapshot.counters
    assert c.failed == 0, snapshot.failures[-1] if snapshot.failures else None
    assert c.messages_accepted == c.started == 20
    assert snapshot.reply_codes(Step.BDAT) == {250: 40}
    assert snapshot.reply_codes(Step.DATA_END) == {250: 20}
    assert snapshot.reply_codes(Step.STARTTLS) == {}
    assert_replies_match_the_log(snapshot, postfix, since, chunking=True)


async def test_cram_md5_and_a_wrong_password(postfix: Postfix, certs: Certs) -> None:
    good = esmtp_scenario(postfix.port, tls=secure(certs), auth=login("CRAM-MD5"))
    snapshot, since = await run_logged(postfix, good)
    assert snapshot.reply_codes(Step.AUTH) == {235: 20}
    assert snapshot.counters.messages_accepted == 20
    assert_replies_match_the_log(snapshot, postfix, since)

    bad = esmtp_scenario(postfix.port, tls=secure(certs), auth=login("PLAIN", "wrong"))
    refused, since = await run_logged(postfix, bad)
    assert refused.reply_codes(Step.AUTH) == {535: 20}
    assert refused.errors_by_class() == {ErrorClass.REPLY: 20}
    assert refused.counters.messages_accepted == 0
    assert_replies_match_the_log(refused, postfix, since)


async def test_8bitmime_smtputf8_and_dsn(postfix: Postfix, certs: Certs) -> None:
    scenario = esmtp_scenario(
        postfix.port,
        tls=secure(certs),
        auth=login("PLAIN"),
        body="8bitmime",
        smtputf8=True,
        mail_from="grüße{session}@smtpbench.test",
        rcpt_to="jürgen{counter}@smtpbench.test",
        subject="Grüße {session}",
        dsn=Dsn(notify=("SUCCESS", "FAILURE"), ret="HDRS", envid="run.{session}", orcpt=True),
        pipelining=True,
        recipients=2,
        load={"rate": 20, "duration": 1},
    )
    snapshot, since = await run_logged(postfix, scenario)
    c = snapshot.counters
    assert c.failed == 0, snapshot.failures[-1] if snapshot.failures else None
    assert c.messages_accepted == 20 and c.recipients_accepted == 40
    assert_replies_match_the_log(snapshot, postfix, since)
    lines = postfix.log_lines(since)
    assert any("to=<jürgen" in line and "status=sent" in line for line in lines)


async def test_what_postfix_lacks_is_a_clear_error(postfix: Postfix, certs: Certs) -> None:
    xoauth2 = esmtp_scenario(postfix.port, tls=secure(certs), auth=login("XOAUTH2"))
    snapshot, since = await run_logged(postfix, xoauth2)
    assert snapshot.errors_by_class() == {ErrorClass.PROTOCOL: 20}
    detail = snapshot.failures[-1].detail
    assert "does not offer AUTH XOAUTH2" in detail and "CRAM-MD5 LOGIN PLAIN" in detail
    # AUTH only after TLS (smtpd_tls_auth_only): without STARTTLS there is none at all.
    assert_replies_match_the_log(snapshot, postfix, since)
    plain = esmtp_scenario(postfix.port, auth=login("PLAIN"))
    before_tls, since = await run_logged(postfix, plain)
    assert "offers no AUTH at all" in before_tls.failures[-1].detail
    assert_replies_match_the_log(before_tls, postfix, since)


async def test_relaying_is_denied_to_outsiders(postfix: Postfix) -> None:
    scenario = esmtp_scenario(postfix.port, rcpt_to="someone{counter}@example.net")
    snapshot, since = await run_logged(postfix, scenario)
    assert snapshot.reply_codes(Step.RCPT) == {554: 20}
    assert snapshot.counters.messages_accepted == 0
    assert_replies_match_the_log(snapshot, postfix, since)
    assert any("Relay access denied" in line for line in postfix.log_lines(since))


def test_the_instance_cleans_up(certs: Certs) -> None:
    skip_without_sasl()
    with private_postfix(certs, {USER: PASSWORD}) as instance:
        root = instance.root
        assert (root / "queue" / "pid" / "master.pid").exists()
    assert not Path(root).exists()


def test_scenarios_here_differ_only_in_what_they_say() -> None:
    scenario = esmtp_scenario(2525, auth=login())
    assert dataclasses.replace(scenario, auth=login()) == scenario
