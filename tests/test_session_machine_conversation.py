"""What a planned conversation says, with no socket (the harness of
``test_session_machine.py``): the greeting and its fallbacks, STARTTLS, the extension
check, AUTH with its challenges, the parameters of MAIL and RCPT, refusals at each step,
BDAT chunks and LMTP, exactly as the server receives them."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from smtpbench.engine.conversation import PlannedConversation
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.server import CommandReceived, ServerConnection, UnrecognizedCommand
from smtpbench.protocol.steps import Step
from smtpbench.scenario import MessageFactory, parse_scenario
from tests.esmtp import Certs, make_certs
from tests.test_session_machine import (
    EHLO_LINES,
    Answer,
    Clock,
    Wire,
    answers,
    converse,
)
from tests.test_session_machine_outcomes import server_context, tls_scenario

AUTH_LOGIN = '[auth]\nmechanism = "LOGIN"\nusername = "alice"\npassword_env = "SECRET"\n'


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


class Taping(Wire):
    """A wire that keeps every byte the session wrote."""

    tapes: ClassVar[list[bytearray]] = []

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.all = bytearray()
        Taping.tapes.append(self.all)

    def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
        self.all += data
        return super().write(data, mark, began)


def said(tmp_path: Path, scenario: str = "", answer: Answer | None = None, **options: Any):
    """The outcome, and every line the session wrote (content lines too)."""
    Taping.tapes = []
    outcome = converse(tmp_path, scenario, answer, wire=Taping, **options)
    return outcome, bytes(Taping.tapes[0]).split(b"\r\n")


def offering(*keywords: str, ehlo: list[tuple[int, str, str | None]] | None = None, **replies: Any):
    """A server that says yes to everything and advertises ``keywords`` (with
    ``EHLO_LINES``' first line only when ``keywords`` are given); ``ehlo``: its replies to
    each EHLO in turn instead; other steps as ``answers``."""
    rest = answers(**replies)
    ehlos = 0

    def answer(event: Any, server: ServerConnection) -> bytes | None:
        nonlocal ehlos
        if isinstance(event, CommandReceived) and event.step in (Step.EHLO, Step.LHLO):
            ehlos += 1
            if ehlo is not None:
                code, text, enhanced = ehlo[min(ehlos, len(ehlo)) - 1]
                if code == 0:
                    return None
                if code // 100 != 2:
                    return server.reply(code, text, enhanced)
            return server.reply(250, [EHLO_LINES[0], *keywords])
        if isinstance(event, CommandReceived) and event.step is Step.STARTTLS:
            if "STARTTLS" in replies:
                return rest(event, server)
            return server.reply(220, "ready for TLS", "2.0.0")
        return rest(event, server)

    return answer


def command(lines: list[bytes], verb: bytes) -> list[bytes]:
    return [line for line in lines if line.startswith(verb)]


# -- greetings ------------------------------------------------------------------------


def test_helo_greets_when_the_scenario_says_so(tmp_path: Path) -> None:
    outcome, lines = said(tmp_path, '[session]\ngreeting = "HELO"\n')
    assert lines[0] == b"HELO smtpbench.localhost"
    assert outcome.labels()[2:4] == ["HELO", "MAIL"] and outcome.record["outcome"] == "ok"
    refused = converse(
        tmp_path, '[session]\ngreeting = "HELO"\n', answers(HELO=(501, "no", "5.5.4"))
    )
    assert refused.labels()[2:] == ["HELO", "QUIT"]


def test_lhlo_greets_for_lmtp(tmp_path: Path) -> None:
    outcome, lines = said(tmp_path, '[session]\ngreeting = "LHLO"\n')
    assert lines[0] == b"LHLO smtpbench.localhost"
    assert outcome.record["messages_accepted"] == 1
    refused = converse(
        tmp_path, '[session]\ngreeting = "LHLO"\n', answers(LHLO=(500, "no", "5.5.1"))
    )
    assert refused.labels()[2:] == ["LHLO", "QUIT"]


@pytest.mark.parametrize(
    "scenario",
    [
        '[session]\nrequire = ["SIZE"]\n',
        AUTH_LOGIN,
    ],
    ids=["an extension required", "AUTH"],
)
def test_no_helo_fallback_when_the_scenario_needs_esmtp(tmp_path: Path, scenario: str) -> None:
    outcome = converse(tmp_path, scenario, answers(EHLO=(502, "what", "5.5.2")))
    assert outcome.labels()[2:] == ["EHLO", "QUIT"]


def test_a_helo_fallback_refused_ends_the_session(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path, "", answers(EHLO=(502, "what", "5.5.2"), HELO=(501, "no", "5.5.4"))
    )
    assert outcome.labels()[2:] == ["EHLO", "HELO", "QUIT"]
    assert outcome.record["messages_rejected"] == 0


# -- STARTTLS and the extension check -------------------------------------------------


def test_starttls_not_advertised_is_named(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(tmp_path, tls_scenario(certs, "starttls"), tls=server_context(certs))
    assert outcome.record["detail"] == (
        'the server does not advertise STARTTLS (tls.mode = "starttls"), which the '
        "scenario asks for"
    )
    assert outcome.labels()[2:] == ["EHLO", "QUIT"]


def test_starttls_refused_quits_without_a_handshake(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "starttls"),
        offering("STARTTLS", STARTTLS=(454, "not now", "4.7.0")),
        tls=server_context(certs),
    )
    assert outcome.labels()[2:] == ["EHLO", "STARTTLS", "QUIT"]


def test_starttls_refused_ehlo_is_not_followed_by_helo(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "starttls"),
        offering("STARTTLS", ehlo=[(250, "", None), (550, "no", "5.7.0")]),
        tls=server_context(certs),
    )
    assert outcome.labels()[2:] == ["EHLO", "STARTTLS", "TLS handshake", "EHLO", "QUIT"]


def test_an_ehlo_refused_before_starttls_is_not_followed_by_helo(
    tmp_path: Path, certs: Certs
) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "starttls"),
        answers(EHLO=(502, "what", "5.5.2")),
        tls=server_context(certs),
    )
    assert outcome.labels()[2:] == ["EHLO", "QUIT"]


def test_starttls_required_is_not_asked_for_again_over_tls(tmp_path: Path, certs: Certs) -> None:
    # After TLS a server does not advertise STARTTLS any more (RFC 3207 section 4.2).
    asked = tls_scenario(certs, "starttls") + '[session]\nrequire = ["STARTTLS", "SIZE"]\n'
    ehlos: list[int] = []
    plain = offering("STARTTLS", "SIZE 1000000")
    over_tls = offering("SIZE 1000000")

    def answer(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step is Step.EHLO:
            ehlos.append(1)
            return (plain if len(ehlos) == 1 else over_tls)(event, server)
        return plain(event, server)

    outcome = converse(tmp_path, asked, answer, tls=server_context(certs))
    assert outcome.record["outcome"] == "ok" and outcome.record["messages_accepted"] == 1


def test_every_missing_extension_is_named_with_the_key_that_asked(tmp_path: Path) -> None:
    scenario = (
        '[session]\nsmtputf8 = true\ndsn = { ret = "HDRS" }\nrequire = ["ENHANCEDSTATUSCODES"]\n'
    )
    outcome = converse(tmp_path, scenario)
    assert outcome.record["detail"] == (
        "the server does not advertise ENHANCEDSTATUSCODES (session.require) or SMTPUTF8 "
        "(session.smtputf8) or DSN (session.dsn), which the scenario asks for"
    )
    lmtp = converse(tmp_path, '[session]\ngreeting = "LHLO"\nrequire = ["ENHANCEDSTATUSCODES"]\n')
    assert lmtp.record["error_step"] == "LHLO"


# -- AUTH -----------------------------------------------------------------------------


def test_auth_login_answers_each_challenge_and_is_timed_whole(tmp_path: Path) -> None:
    outcome, lines = said(
        tmp_path,
        AUTH_LOGIN,
        offering(
            "AUTH LOGIN PLAIN",
            AUTH=[(334, "VXNlcm5hbWU6", None), (334, "UGFzc3dvcmQ6", None), (235, "ok", "2.7.0")],
        ),
    )
    assert lines[1:4] == [
        b"AUTH LOGIN",
        base64.b64encode(b"alice"),
        base64.b64encode(b"s3cret"),
    ]
    # One step, from the AUTH line to the 235: three round trips.
    assert [s for s in outcome.steps() if s[0] == "AUTH"] == [("AUTH", pytest.approx(0.003), 235)]
    assert outcome.record["outcome"] == "ok"


def test_auth_challenges_and_the_refusal_are_in_the_transcript_hidden(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        AUTH_LOGIN,
        offering(
            "AUTH LOGIN",
            AUTH=[(334, "VXNlcm5hbWU6", None), (334, "UGFzc3dvcmQ6", None), (535, "no", "5.7.8")],
        ),
    )
    transcript = outcome.snapshot().failures[-1].transcript
    auth = [(line.sent, line.reply) for line in transcript[2:5]]
    assert [reply for _, reply in auth] == ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "535 5.7.8 no"]
    assert auth[0][0].startswith("AUTH LOGIN")
    assert all(sent == "(SASL response hidden)" for sent, _ in auth[1:])
    assert outcome.labels()[-2:] == ["AUTH", "QUIT"]


def test_a_server_that_never_stops_challenging_is_a_protocol_error(tmp_path: Path) -> None:
    # XOAUTH2 answers every challenge (the server's error) with an empty line.
    xoauth2 = '[auth]\nmechanism = "XOAUTH2"\nusername = "u"\npassword_env = "SECRET"\n'
    outcome, lines = said(
        tmp_path, xoauth2, offering("AUTH XOAUTH2", AUTH=(334, "eyJzdGF0dXMiOiI0MDEifQ==", None))
    )
    assert outcome.record["error"] == "protocol error"
    assert outcome.record["detail"] == "AUTH XOAUTH2: more than 5 challenges"
    assert lines[2:7] == [b""] * 5  # five answers, then no more


def test_cram_md5_answers_the_challenge_it_was_given(tmp_path: Path) -> None:
    # RFC 2195 section 2: the example challenge, user and password, and the response.
    scenario = '[auth]\nmechanism = "CRAM-MD5"\nusername = "tim"\npassword = "tanstaaftanstaaf"\n'
    challenge = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    outcome, lines = said(
        tmp_path,
        scenario,
        offering("AUTH CRAM-MD5", AUTH=[(334, challenge, None), (235, "ok", "2.7.0")]),
    )
    assert lines[2] == b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
    assert outcome.record["outcome"] == "ok"


def test_a_mechanism_not_offered_is_named_with_what_is_offered(
    tmp_path: Path, certs: Certs
) -> None:
    outcome = converse(tmp_path, AUTH_LOGIN, offering("AUTH PLAIN CRAM-MD5"))
    assert outcome.record["detail"] == (
        "the server does not offer AUTH LOGIN (before TLS), which auth.mechanism asks for; "
        "it offers CRAM-MD5 PLAIN"
    )
    assert outcome.record["error_step"] == "EHLO" and outcome.labels()[-1] == "QUIT"
    none = converse(tmp_path, AUTH_LOGIN, offering("SIZE 100"))
    assert none.record["detail"].endswith("it offers no AUTH at all")
    lmtp = converse(tmp_path, AUTH_LOGIN + '[session]\ngreeting = "LHLO"\n', offering("SIZE 1"))
    assert lmtp.record["error_step"] == "LHLO"
    over_tls = converse(
        tmp_path,
        tls_scenario(certs, "implicit") + AUTH_LOGIN,
        offering("AUTH PLAIN"),
        tls=server_context(certs),
    )
    assert over_tls.record["detail"].startswith("the server does not offer AUTH LOGIN, which")


# -- MAIL and RCPT --------------------------------------------------------------------


def mail_line(lines: list[bytes]) -> bytes:
    return command(lines, b"MAIL FROM:")[0]


def test_mail_says_the_size_only_to_a_server_that_takes_it(tmp_path: Path) -> None:
    _, lines = said(tmp_path, '[session]\nsize = "1000"\n', offering("PIPELINING"))
    assert mail_line(lines) == b"MAIL FROM:<sender0@smtpbench.test>"
    _, lines = said(tmp_path, '[session]\nsize = "1000"\n', offering("SIZE 5000"))
    assert re.fullmatch(rb"MAIL FROM:<sender0@smtpbench\.test> SIZE=\d+", mail_line(lines))


def test_mail_and_rcpt_parameters_follow_the_scenario(tmp_path: Path) -> None:
    scenario = (
        '[session]\nbody = "8bitmime"\n'
        'dsn = { notify = ["SUCCESS", "FAILURE"], ret = "HDRS", envid = "id+{session}", '
        "orcpt = true }\n"
    )
    _, lines = said(tmp_path, scenario, offering("8BITMIME", "DSN"))
    # ENVID in xtext (RFC 3461 section 4): "+" is "+2B".
    assert (
        mail_line(lines)
        == b"MAIL FROM:<sender0@smtpbench.test> BODY=8BITMIME RET=HDRS ENVID=id+2B0"
    )
    assert command(lines, b"RCPT TO:") == [
        b"RCPT TO:<user0@smtpbench.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user0@smtpbench.test"
    ]


def test_smtputf8_says_8bitmime_only_where_the_server_has_it(tmp_path: Path) -> None:
    _, lines = said(tmp_path, "[session]\nsmtputf8 = true\n", offering("SMTPUTF8"))
    assert mail_line(lines) == b"MAIL FROM:<sender0@smtpbench.test> SMTPUTF8"
    _, lines = said(tmp_path, "[session]\nsmtputf8 = true\n", offering("SMTPUTF8", "8BITMIME"))
    assert mail_line(lines) == b"MAIL FROM:<sender0@smtpbench.test> BODY=8BITMIME SMTPUTF8"


def test_dsn_with_notify_or_orcpt_alone(tmp_path: Path) -> None:
    _, lines = said(tmp_path, '[session]\ndsn = { notify = "NEVER" }\n', offering("DSN"))
    assert command(lines, b"RCPT TO:") == [b"RCPT TO:<user0@smtpbench.test> NOTIFY=NEVER"]
    _, lines = said(tmp_path, "[session]\ndsn = { orcpt = true }\n", offering("DSN"))
    assert command(lines, b"RCPT TO:") == [
        b"RCPT TO:<user0@smtpbench.test> ORCPT=rfc822;user0@smtpbench.test"
    ]
    _, lines = said(tmp_path, '[session]\ndsn = { ret = "FULL" }\n', offering("DSN"))
    assert command(lines, b"RCPT TO:") == [b"RCPT TO:<user0@smtpbench.test>"]


# -- transactions ---------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [False, True])
def test_rset_between_messages_and_noop_before_each(tmp_path: Path, pipelining: bool) -> None:
    scenario = (
        f"[session]\nmessages = 2\nrset_between_messages = true\nnoop = 1.0\n"
        f"pipelining = {str(pipelining).lower()}\n"
    )
    outcome, lines = said(tmp_path, scenario)
    verbs = [line.split(b" ")[0] for line in lines if line[:4].isupper() and len(line) <= 60]
    order = [v for v in verbs if v in (b"RSET", b"NOOP", b"MAIL", b"QUIT")]
    assert order == [b"NOOP", b"MAIL", b"RSET", b"NOOP", b"MAIL", b"QUIT"]
    assert outcome.record["messages_accepted"] == 2


@pytest.mark.parametrize("pipelining", [False, True])
def test_data_refused_sends_no_content(tmp_path: Path, pipelining: bool) -> None:
    outcome, lines = said(
        tmp_path,
        f"[session]\npipelining = {str(pipelining).lower()}\n",
        answers(DATA=(554, "no", "5.7.1")),
    )
    assert b"." not in lines and "DATA end" not in outcome.labels()
    assert outcome.record["messages_rejected"] == 1 and outcome.labels()[-1] == "QUIT"


@pytest.mark.parametrize(
    ("scenario", "server"),
    [
        ('chunking = true\nchunk_size = 400\nsize = "1000"\n', lambda: answers()),
        ("", lambda: answers(DATA=[(554, "not this one", "5.7.1"), (354, "go ahead", None)])),
        ('greeting = "LHLO"\n', lambda: offering(*EHLO_LINES[1:])),
    ],
    ids=["bdat", "data-refused", "lmtp"],
)
def test_one_command_at_a_time_the_next_message_follows_whatever_ended_this_one(
    tmp_path: Path, scenario: str, server: Callable[[], Answer]
) -> None:
    # A message sent in chunks, one refused at DATA, one sent over LMTP: each is done, and
    # the session goes on to its next message rather than to QUIT. (Each run gets a server
    # of its own: one that answers in turn keeps count.)
    outcome = converse(tmp_path, "[session]\nmessages = 2\n" + scenario, server())
    assert outcome.labels().count("MAIL") == 2 and outcome.labels()[-1] == "QUIT"
    ended = outcome.record["messages_accepted"] + outcome.record["messages_rejected"]
    assert ended == 2


@pytest.mark.parametrize("pipelining", [False, True])
def test_every_mail_from_says_the_size_of_its_own_message(tmp_path: Path, pipelining: bool) -> None:
    # The MAIL FROM parameters are kept while the server and the size do not change: a
    # message of another size says its own, and one of the same size says it too.
    scenario = (
        '[session]\nmessages = 12\nsize = { distribution = "choice", sizes = ["1000", "2000"] }\n'
        f"pipelining = {str(pipelining).lower()}\n"
    )
    _, lines = said(tmp_path, scenario, offering("PIPELINING", "SIZE 100000"))
    stated = [int(line.rsplit(b"SIZE=", 1)[1]) for line in command(lines, b"MAIL FROM:")]
    sent = []
    for at, line in enumerate(lines):
        if line == b"DATA":
            end = lines.index(b".", at)
            # Dot-stuffing undone (RFC 5321 section 4.5.2): the message as its SIZE counts it.
            body = [row[1:] if row.startswith(b".") else row for row in lines[at + 1 : end]]
            sent.append(len(b"\r\n".join(body)) + 2)
    assert stated == sent and len(sent) == 12
    # What the test rests on: sizes that change, and sizes that repeat, one after the other.
    pairs = list(itertools.pairwise(sent))
    assert any(a == b for a, b in pairs) and any(a != b for a, b in pairs)


def test_a_354_after_every_recipient_refused_gets_the_lone_dot(tmp_path: Path) -> None:
    # RFC 2920 section 3.1: the client must send the end of data, and no content.
    plain = answers(RCPT=(550, "no", "5.1.1"))

    def go_ahead(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step is Step.DATA:
            return server.reply(354, "go ahead anyway", None)
        if isinstance(event, UnrecognizedCommand):  # the lone dot, as this server sees it
            return server.reply(250, "nothing taken", None)
        return plain(event, server)

    outcome, lines = said(tmp_path, "[session]\npipelining = true\nrecipients = 2\n", go_ahead)
    at = lines.index(b"DATA")
    assert lines[at + 1] == b"." and lines[at + 2] == b"QUIT"
    assert outcome.record["messages_rejected"] == 1 and outcome.record["messages_accepted"] == 0


def test_mail_refused_in_a_pipelined_group_ends_the_message(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path, "[session]\npipelining = true\n", answers(MAIL=(451, "later", None))
    )
    assert outcome.record["messages_rejected"] == 1 and "DATA end" not in outcome.labels()


# -- BDAT and LMTP --------------------------------------------------------------------


def test_bdat_chunks_one_after_the_other(tmp_path: Path) -> None:
    outcome, lines = said(tmp_path, '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n')
    bdats = re.findall(rb"BDAT (\d+)( LAST)?\r\n", b"\r\n".join(lines))
    assert bdats == [(b"400", b""), (b"400", b""), (b"200", b" LAST")]
    assert outcome.record["messages_accepted"] == 1
    failure = converse(
        tmp_path,
        '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n',
        answers(BDAT=(552, "too big", "5.3.4")),
    )
    # The first chunk refused: the message is refused, no more chunks go.
    assert failure.labels().count("BDAT") == 1 and "DATA end" not in failure.labels()
    assert failure.record["messages_rejected"] == 1
    shown = [line.sent for line in failure.snapshot().failures[-1].transcript]
    assert "BDAT 400 (and 400 bytes of message)" in shown


def test_bdat_chunks_go_with_the_pipelined_group(tmp_path: Path) -> None:
    outcome, lines = said(
        tmp_path, '[session]\nchunking = true\npipelining = true\nchunk_size = 400\nsize = "1000"\n'
    )
    assert outcome.labels().count("BDAT") == 2 and outcome.labels().count("DATA end") == 1
    assert outcome.record["messages_accepted"] == 1
    # MAIL, RCPT and every chunk in one write: the chunks right after RCPT, no DATA.
    at = lines.index(b"RCPT TO:<user0@smtpbench.test>")
    assert lines[at + 1] == b"BDAT 400" and b"DATA" not in lines
    assert outcome.deadlines.__len__() == 4  # banner, EHLO, the group, QUIT


def test_lmtp_with_chunks_waits_for_the_recipients(tmp_path: Path) -> None:
    scenario = (
        '[session]\ngreeting = "LHLO"\nchunking = true\npipelining = true\n'
        'chunk_size = 400\nsize = "1000"\n'
    )
    outcome = converse(tmp_path, scenario, offering(*EHLO_LINES[1:]))
    assert outcome.record["messages_accepted"] == 1
    refused = converse(tmp_path, scenario, offering(*EHLO_LINES[1:], RCPT=(550, "no", "5.1.1")))
    assert refused.labels()[-2:] == ["RSET", "QUIT"] and "BDAT" not in refused.labels()
    assert refused.record["messages_rejected"] == 1
    mail = converse(tmp_path, scenario, offering(*EHLO_LINES[1:], MAIL=(451, "later", None)))
    assert mail.record["messages_rejected"] == 1 and "BDAT" not in mail.labels()


def test_lmtp_without_chunks_sends_the_content_after_the_group(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        '[session]\ngreeting = "LHLO"\npipelining = true\nmessages = 2\n',
        offering(*EHLO_LINES[1:]),
    )
    assert outcome.record["messages_accepted"] == 2
    assert outcome.labels().count("DATA end") == 2


def test_a_message_with_more_recipients_counts_each(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        "[session]\npipelining = true\nrecipients = 3\n",
        answers(RCPT=[(250, "ok", None), (450, "later", None), (250, "ok", None)]),
    )
    assert outcome.recorder.recipients_accepted == 2 and outcome.recorder.recipients_rejected == 1


# -- more of the rules ----------------------------------------------------------------


def test_any_2xx_is_positive_even_200(tmp_path: Path) -> None:
    # RFC 5321 section 4.2.1: the first digit says it; 200 is a (nonstandard) success.
    plain = answers()

    def all_200(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step in (
            Step.HELO, Step.MAIL, Step.RCPT, Step.BDAT,
        ):  # fmt: skip
            return server.reply(200, "fine", None)
        return plain(event, server)

    helo = converse(tmp_path, '[session]\ngreeting = "HELO"\n', all_200)
    assert helo.labels()[2:] == ["HELO", "MAIL", "RCPT", "DATA", "DATA end", "QUIT"]
    assert helo.recorder.recipients_accepted == 1
    piped = converse(tmp_path, "[session]\npipelining = true\n", all_200)
    assert "DATA end" in piped.labels() and piped.recorder.recipients_accepted == 1
    chunks = converse(
        tmp_path, '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n', all_200
    )
    assert chunks.labels().count("BDAT") == 2 and "DATA end" in chunks.labels()


def test_starttls_required_without_tls_is_checked(tmp_path: Path) -> None:
    outcome = converse(tmp_path, '[session]\nrequire = ["STARTTLS"]\n')
    assert outcome.record["error"] == "protocol error"
    assert "STARTTLS" in outcome.record["detail"]


def test_a_mechanism_not_offered_ends_the_session_at_once(tmp_path: Path) -> None:
    outcome = converse(tmp_path, AUTH_LOGIN, offering("AUTH PLAIN"))
    assert outcome.labels()[2:] == ["EHLO", "QUIT"]


def test_a_connection_broken_during_auth_shows_the_auth_line(tmp_path: Path) -> None:
    outcome = converse(tmp_path, AUTH_LOGIN, offering("AUTH LOGIN", AUTH=(0, "", None)))
    last = outcome.snapshot().failures[-1].transcript[-1]
    assert (last.sent, last.reply) == ("AUTH LOGIN (credentials hidden)", "")


def test_rset_opens_a_pipelined_group_after_a_refused_message(tmp_path: Path) -> None:
    outcome, lines = said(
        tmp_path,
        "[session]\nmessages = 2\npipelining = true\nrset_between_messages = true\n",
        answers(MAIL=[(451, "later", None), (250, "ok", None)]),
    )
    assert command(lines, b"RSET") == [b"RSET"]
    assert outcome.record["messages_accepted"] == 1


def test_dsn_parameters_go_in_a_pipelined_group_too(tmp_path: Path) -> None:
    _, lines = said(
        tmp_path,
        '[session]\npipelining = true\ndsn = { notify = "NEVER", orcpt = true }\n',
        offering("PIPELINING", "DSN"),
    )
    assert command(lines, b"RCPT TO:") == [
        b"RCPT TO:<user0@smtpbench.test> NOTIFY=NEVER ORCPT=rfc822;user0@smtpbench.test"
    ]


def test_the_last_chunk_refused_refuses_the_message(tmp_path: Path) -> None:
    piped = (
        "[session]\nmessages = 2\npipelining = true\nchunking = true\n"
        'rset_between_messages = true\nchunk_size = 400\nsize = "1000"\n'
    )
    outcome = converse(tmp_path, piped, answers(DATA_END=[(250, "ok", None), (554, "no", "5.7.1")]))
    assert (outcome.record["messages_accepted"], outcome.record["messages_rejected"]) == (1, 1)
    shown = [line.sent for line in outcome.snapshot().failures[-1].transcript]
    assert shown.count("BDAT 400 (and 400 bytes of message)") == 4
    assert shown.count("BDAT 200 LAST (and 200 bytes of message)") == 2
    lmtp = (
        '[session]\ngreeting = "LHLO"\npipelining = true\nchunking = true\n'
        'chunk_size = 400\nsize = "1000"\n'
    )
    refused = converse(tmp_path, lmtp, offering(*EHLO_LINES[1:], DATA_END=(554, "no", "5.7.1")))
    assert refused.record["messages_rejected"] == 1
    # LMTP: after the RCPT replies, every chunk in one write (one read for their replies).
    assert len(refused.deadlines) == 5  # banner, LHLO, MAIL and RCPT, the chunks, QUIT


def test_chunks_of_a_size_that_divides_the_message(tmp_path: Path) -> None:
    for pipelining in ("false", "true"):
        outcome, lines = said(
            tmp_path,
            f"[session]\nchunking = true\npipelining = {pipelining}\n"
            'chunk_size = 500\nsize = "1000"\n',
        )
        bdats = re.findall(rb"BDAT (\d+)( LAST)?\r\n", b"\r\n".join(lines))
        assert bdats == [(b"500", b""), (b"500", b" LAST")], pipelining
        assert outcome.record["messages_accepted"] == 1


def test_each_chunk_is_owed_within_its_own_timeout(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n'
        '[timeouts]\nBDAT = "7s"\n"DATA end" = "9s"\n',
    )
    # Reads 5 to 7 await the chunks (after banner, EHLO, MAIL and RCPT): BDAT, BDAT, then
    # the last, owed as the end of data.
    limits = [d - (1000 + (k + 1) * 0.001) for k, d in enumerate(outcome.deadlines)][4:7]
    assert limits == pytest.approx([7, 7, 9], abs=1e-6)


def test_the_lone_dot_is_shown_as_no_content(tmp_path: Path) -> None:
    plain = answers(RCPT=(550, "no", "5.1.1"))

    def go_ahead(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step is Step.DATA:
            return server.reply(354, "go ahead anyway", None)
        if isinstance(event, UnrecognizedCommand):
            return server.reply(250, "nothing taken", None)
        return plain(event, server)

    outcome = converse(tmp_path, "[session]\npipelining = true\n", go_ahead)
    shown = [(line.sent, line.reply) for line in outcome.snapshot().failures[-1].transcript]
    assert ("(message content, 0 bytes)", "250 nothing taken") in shown


# -- XCLIENT --------------------------------------------------------------------------

XCLIENT = (
    '[client]\nxclient = true\naddresses = ["198.51.100.1", "198.51.100.2"]\n'
    'name = "client{session}.example.net"\n'
)


def postfix_xclient(code: int = 220) -> Answer:
    """A server that offers XCLIENT and answers it with ``code``."""
    rest = offering("XCLIENT ADDR NAME HELO", "PIPELINING")

    def answer(event: Any, server: ServerConnection) -> bytes | None:
        verb = getattr(event, "verb", "") or getattr(getattr(event, "step", None), "name", "")
        if str(verb).upper() == "XCLIENT":
            return server.reply(code, "ok" if code == 220 else "no", None)
        return rest(event, server)

    return answer


def test_xclient_claims_the_sessions_client_and_greets_again(tmp_path: Path) -> None:
    outcome, lines = said(tmp_path, XCLIENT, postfix_xclient(), number=3)
    xclient = command(lines, b"XCLIENT")
    # Session 3 of a pool of 2: the second address.
    assert xclient == [
        b"XCLIENT ADDR=198.51.100.2 NAME=client3.example.net HELO=smtpbench.localhost"
    ]
    assert outcome.labels()[2:5] == ["EHLO", "XCLIENT", "EHLO"]
    assert outcome.record["messages_accepted"] == 1


def test_xclient_writes_an_ipv6_address_as_postfix_does(tmp_path: Path) -> None:
    six = '[client]\nxclient = true\naddresses = "2001:db8::7"\n'
    _, lines = said(tmp_path, six, postfix_xclient())
    assert command(lines, b"XCLIENT")[0].startswith(b"XCLIENT ADDR=IPV6:2001:db8::7 NAME=")


def test_xclient_refused_or_not_offered_ends_the_session(tmp_path: Path) -> None:
    refused = converse(tmp_path, XCLIENT, postfix_xclient(550))
    assert refused.labels()[2:] == ["EHLO", "XCLIENT", "QUIT"]
    missing = converse(tmp_path, XCLIENT)
    assert missing.labels()[2:] == ["EHLO", "QUIT"]
    assert "XCLIENT" in missing.record["detail"] and "client.xclient" in missing.record["detail"]


def test_the_greeting_after_xclient_has_no_helo_fallback(tmp_path: Path) -> None:
    plain = postfix_xclient()
    ehlos: list[int] = []

    def second_refused(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step is Step.EHLO:
            ehlos.append(1)
            if len(ehlos) == 2:
                return server.reply(554, "not you", "5.7.1")
        return plain(event, server)

    outcome = converse(tmp_path, XCLIENT, second_refused)
    assert outcome.labels()[2:] == ["EHLO", "XCLIENT", "EHLO", "QUIT"]


@pytest.mark.parametrize(("chunk", "limit"), [(400, 7), (4000, 9)])
def test_lmtp_chunks_are_owed_within_the_first_ones_timeout(
    tmp_path: Path, chunk: int, limit: int
) -> None:
    # LMTP: every chunk goes in one write once the RCPT replies are in; the wait is the
    # first chunk's (a BDAT, or the end of data when it is the only one).
    outcome = converse(
        tmp_path,
        '[session]\ngreeting = "LHLO"\npipelining = true\nchunking = true\n'
        f'chunk_size = {chunk}\nsize = "1000"\n'
        '[timeouts]\nBDAT = "7s"\n"DATA end" = "9s"\n',
        offering(*EHLO_LINES[1:]),
    )
    # Read 4 (after banner, LHLO, and MAIL with RCPT) awaits the chunks.
    assert outcome.deadlines[3] == pytest.approx(1000 + 4 * 0.001 + limit, abs=1e-6)
    assert outcome.record["messages_accepted"] == 1


def test_a_banner_is_positive_by_its_first_digit(tmp_path: Path) -> None:
    ok = converse(tmp_path, "", banner=b"200 mx.test hello\r\n")
    assert ok.labels()[2] == "EHLO" and ok.record["messages_accepted"] == 1


def test_a_message_tried_again_makes_only_its_own_transaction(tmp_path: Path) -> None:
    scenario = "[session]\nmessages = 3\nrecipients = 2\n"
    parsed = parse_scenario(f'name = "machine"\nseed = 1\n{scenario}')
    factory = MessageFactory(parsed, seed=1)
    plan = factory.plan_session(0)
    again = dataclasses.replace(plan.messages[1], recipients=("user9@smtpbench.test",))
    conversation = PlannedConversation(factory, plan, only=((1, again),))
    outcome, lines = said(tmp_path, scenario, conversation=conversation)
    assert command(lines, b"RCPT TO:") == [b"RCPT TO:<user9@smtpbench.test>"]
    assert len(command(lines, b"MAIL FROM:")) == 1
    assert outcome.record["messages_accepted"] == 1


def test_ehlo_refused_with_auth_asked_is_one_error(tmp_path: Path) -> None:
    outcome = converse(tmp_path, AUTH_LOGIN, answers(EHLO=(502, "what", "5.5.2")))
    assert outcome.snapshot().errors_by_class() == {ErrorClass.REPLY: 1}


def test_a_200_to_the_greeting_is_positive_too(tmp_path: Path) -> None:
    plain = answers()

    def greet_200(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step in (Step.EHLO, Step.LHLO):
            return server.reply(200, "hello", None)
        return plain(event, server)

    ehlo = converse(tmp_path, "", greet_200)
    assert ehlo.labels()[2:4] == ["EHLO", "MAIL"]
    lhlo = converse(tmp_path, '[session]\ngreeting = "LHLO"\n', greet_200)
    assert lhlo.labels()[2:4] == ["LHLO", "MAIL"]

    def helo_200(event: Any, server: ServerConnection) -> bytes | None:
        if isinstance(event, CommandReceived) and event.step is Step.EHLO:
            return server.reply(502, "what", "5.5.2")
        if isinstance(event, CommandReceived) and event.step is Step.HELO:
            return server.reply(200, "hello", None)
        return plain(event, server)

    fallback = converse(tmp_path, "", helo_200)
    assert fallback.labels()[2:5] == ["EHLO", "HELO", "MAIL"]


def test_the_last_chunk_refused_is_shown_as_the_last(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        '[session]\nchunking = true\nchunk_size = 400\nsize = "1000"\n',
        answers(DATA_END=(554, "no", "5.7.1")),
    )
    shown = [(line.sent, line.reply) for line in outcome.snapshot().failures[-1].transcript]
    assert ("BDAT 200 LAST (and 200 bytes of message)", "554 5.7.1 no") in shown
