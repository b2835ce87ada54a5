"""The session machine's outcomes with no socket (the harness of
``test_session_machine.py``): the deadline each step sets, start lag and latencies from
the intended start, what is counted as sent, the transcript of a failure, how a broken
connection is classified and told, the messages handed to transit matching, and the
settings a scenario gives every session."""

from __future__ import annotations

import dataclasses
import errno
import resource
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from smtpbench.engine.reactor import SessionCancelled, StepTimeout
from smtpbench.engine.session import Session, SessionSettings, SessionSetupError, Talk, preflight
from smtpbench.engine.transport import Address
from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.server import CommandReceived, MessageReceived, ServerConnection
from smtpbench.protocol.steps import Step
from smtpbench.scenario import parse_scenario
from smtpbench.transit.sends import TransitSends
from tests.esmtp import Certs, make_certs
from tests.test_session_machine import (
    ADDRESS,
    EHLO_LINES,
    THINK,
    Answer,
    Clock,
    Wire,
    answers,
    converse,
)

TIMEOUTS = (
    '[timeouts]\nbanner = "5s"\nEHLO = "7s"\nMAIL = "11s"\nRCPT = "13s"\n'
    'DATA = "17s"\n"DATA end" = "19s"\nQUIT = "23s"\n'
)


def test_each_step_must_be_done_within_its_own_timeout_from_when_it_began(
    tmp_path: Path,
) -> None:
    outcome = converse(tmp_path, TIMEOUTS)
    # Read k (from 1) awaits the step begun at 1000 + k * THINK on the test's clock (the
    # connect took one THINK, each reply one more): banner, EHLO, MAIL, RCPT, DATA, the
    # end of data, QUIT.
    limits = [5, 7, 11, 13, 17, 19, 23]
    expected = [1000 + (k + 1) * THINK + limit for k, limit in enumerate(limits)]
    assert outcome.deadlines == pytest.approx(expected, abs=1e-9)


def test_a_pipelined_group_is_owed_its_first_reply_within_the_first_steps_timeout(
    tmp_path: Path,
) -> None:
    outcome = converse(tmp_path, TIMEOUTS + "[session]\npipelining = true\n")
    # banner, EHLO, then MAIL+RCPT+DATA in one write (read 3, from MAIL's start), then the
    # content with QUIT (read 4: the end of data's reply is the first one owed).
    expected = [1000 + THINK + 5, 1000 + 2 * THINK + 7, 1000 + 3 * THINK + 11]
    expected.append(1000 + 4 * THINK + 19)
    assert outcome.deadlines == pytest.approx(expected, abs=1e-9)


def test_lag_and_latencies_run_from_the_intended_start(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", late=0.25)
    record = outcome.record
    assert record["start_lag"] == pytest.approx(0.25, abs=1e-9)
    # The connect and 6 replies up to the message's final one (banner, EHLO, MAIL, RCPT,
    # DATA, end of data), one THINK each; then QUIT's.
    assert record["message_latency"] == [pytest.approx(0.25 + 7 * THINK, abs=1e-9)]
    assert record["duration"] == pytest.approx(8 * THINK, abs=1e-9)


def test_every_byte_handed_to_the_connection_is_counted_as_sent(tmp_path: Path) -> None:
    wires: list[Wire] = []

    class Counting(Wire):
        def __init__(self, clock: Clock) -> None:
            super().__init__(clock)
            self.total = 0
            wires.append(self)

        def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
            self.total += len(data)
            return super().write(data, mark, began)

    outcome = converse(tmp_path, '[session]\nsize = "2KiB"\n', wire=Counting)
    assert wires[0].total > 2048
    assert outcome.recorder.bytes_sent == wires[0].total


def test_the_transcript_of_a_failure_shows_what_was_said_and_answered(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", answers(RCPT=(550, "no such user", "5.1.1")))
    failure = outcome.snapshot().failures[-1]
    shown = [(line.sent, line.reply) for line in failure.transcript]
    assert shown == [
        ("(connect)", "220 mx.test ESMTP"),
        ("EHLO smtpbench.localhost", "250 mx.test"),
        ("MAIL FROM:<sender0@smtpbench.test> SIZE=2048", "250 2.0.0 ok"),
        ("RCPT TO:<user0@smtpbench.test>", "550 5.1.1 no such user"),
        ("RSET", "250 2.0.0 ok"),
        ("QUIT", "221 2.0.0 bye"),
    ]
    assert failure.session == 0 and failure.error == "unexpected reply"


def test_a_failure_is_told_with_its_session_number(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", answers(MAIL=(451, "later", "4.3.0")), number=3)
    failure = outcome.snapshot().failures[-1]
    assert failure.session == 3 and failure.step == "MAIL"
    # It failed at the end of the session: connect and four replies after the start.
    assert failure.time == pytest.approx(1000 + 5 * THINK, abs=1e-9)


def test_the_content_in_a_transcript_is_shown_by_its_size(tmp_path: Path) -> None:
    outcome = converse(tmp_path, '[session]\nsize = "1000"\n', answers(DATA_END=(0, "", None)))
    failure = outcome.snapshot().failures[-1]
    last = failure.transcript[-1]
    # The wire bytes of the content: the message of 1000 bytes and the final dot.
    size = int(last.sent.removeprefix("(message content, ").removesuffix(" bytes)"))
    assert 1000 <= size <= 1010
    assert last.sent == f"(message content, {size} bytes)" and last.reply == ""


def test_a_reset_connection_is_named_and_what_was_unanswered_shown(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", throw_at=(3, ConnectionResetError(104, "reset by peer")))
    record = outcome.record
    assert (record["error"], record["error_step"]) == ("connection reset", "MAIL")
    assert record["detail"] == "[Errno 104] reset by peer"
    failure = outcome.snapshot().failures[-1]
    assert failure.transcript[-1].sent.startswith("MAIL FROM:")
    assert failure.transcript[-1].reply == ""
    assert outcome.snapshot().errors_by_class() == {ErrorClass.RESET: 1}


def test_an_error_with_no_words_is_named_by_its_kind(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", throw_at=(2, OSError()))
    assert outcome.snapshot().errors_by_class() == {ErrorClass.NETWORK: 1}
    assert outcome.record["detail"] == "OSError" and outcome.record["error_step"] == "EHLO"


@pytest.mark.parametrize("number", [errno.EMFILE, errno.ENFILE])
def test_running_out_of_file_descriptors_says_the_limit_and_what_to_do(
    tmp_path: Path, number: int
) -> None:
    outcome = converse(tmp_path, "", throw_at=(1, OSError(number, "Too many open files")))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert outcome.record["detail"] == (
        f"the client ran out of file descriptors (limit {soft}): "
        "raise it with `ulimit -n`, or lower the concurrency"
    )


def test_a_timeout_at_the_banner_names_the_banner_and_its_limit(tmp_path: Path) -> None:
    outcome = converse(tmp_path, TIMEOUTS, throw_at=(1, StepTimeout()))
    assert outcome.record["detail"] == "no reply to banner within 5s"
    assert outcome.snapshot().errors_by_class() == {ErrorClass.TIMEOUT: 1}


def test_a_shutdown_is_counted_once_as_the_reply_it_was(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", answers(MAIL=(421, "closing", "4.3.2")))
    assert outcome.snapshot().errors_by_class() == {ErrorClass.REPLY: 1}
    failure = outcome.snapshot().failures[-1]
    assert [line.reply for line in failure.transcript][-1] == "421 4.3.2 closing"


def _transit(path: Path) -> TransitSends:
    sends = TransitSends(path)
    sends.anchor(lambda: 0.0)  # engine times are written as they are, within a second
    return sends


def test_accepted_messages_are_handed_to_transit_and_refused_ones_are_not(
    tmp_path: Path,
) -> None:
    sends = _transit(tmp_path / "sent.txt")
    converse(
        tmp_path,
        "[session]\nmessages = 3\n",
        answers(
            MAIL=[(250, "ok", None), (451, "later", None), (250, "ok", None)],
            DATA_END=[(554, "spam", None), (250, "ok", None)],
        ),
        number=2,
        late=0.5,
        adjust=lambda s: dataclasses.replace(s, transit=sends),
    )
    sends.close()
    lines = (tmp_path / "sent.txt").read_text().splitlines()
    # Message 0 refused at its end, message 1 refused at MAIL, message 2 accepted.
    assert len(lines) == 1
    session, message, intended, done = lines[0].split()[:4]
    assert (session, message) == ("2", "2")
    offset = float(intended) - (1000 - 0.5)  # the wall clock's lead on the engine's
    # Message 2's 250 came with read 11 (banner, EHLO, 4 for message 0, 1 for message 1,
    # 4 for message 2): 12 THINKs after the session's start, with the connect.
    assert float(done) - offset == pytest.approx(1000 + 12 * THINK, abs=2e-6)


def test_a_refused_message_is_dropped_from_transit_so_a_later_accept_is_not_it(
    tmp_path: Path,
) -> None:
    sends = _transit(tmp_path / "sent.txt")
    converse(
        tmp_path,
        "[session]\nmessages = 2\n",
        answers(RCPT=[(550, "no", None), (250, "ok", None)]),
        adjust=lambda s: dataclasses.replace(s, transit=sends),
    )
    sends.close()
    lines = (tmp_path / "sent.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["0", "1"]]


# -- the settings ---------------------------------------------------------------------

FULL = """
name = "settings"
[session]
greeting = "LHLO"
pipelining = true
chunking = true
chunk_size = "1000"
body = "8bitmime"
smtputf8 = true
dsn = { notify = ["SUCCESS", "FAILURE"], ret = "HDRS", orcpt = true }
require = ["SIZE"]
[tls]
mode = "implicit"
verify = false
sni = "mx.example.test"
[auth]
mechanism = "LOGIN"
username = "alice"
password_env = "PW"
[timeouts]
MAIL = "9s"
[success]
MAIL = [250, 251]
"""


def test_every_session_setting_comes_from_the_scenario() -> None:
    scenario = parse_scenario(FULL)
    settings = SessionSettings.from_scenario(scenario, ADDRESS, environ={"PW": "pw"})
    assert settings.address == ADDRESS and settings.greeting == "LHLO"
    assert settings.pipelining is True and settings.chunking is True
    assert settings.chunk_size == 1000 and settings.body == "8bitmime"
    assert settings.smtputf8 is True
    assert settings.dsn.notify == ("SUCCESS", "FAILURE") and settings.dsn.ret == "HDRS"
    assert settings.dsn.orcpt is True
    assert "SIZE" in settings.required and "DSN" in settings.required
    assert settings.tls_mode == "implicit" and settings.ssl_context is not None
    assert settings.server_hostname == "mx.example.test"
    assert settings.auth_mechanism == "LOGIN"
    assert (settings.auth_username, settings.auth_secret) == ("alice", "pw")
    assert settings.timeouts[Step.MAIL] == 9.0 and settings.timeouts[Step.RCPT] == 300.0
    assert settings.success[Step.MAIL] == frozenset({250, 251})
    assert settings.transit is None


def test_a_scenario_without_tls_or_auth_has_no_context_and_no_credentials() -> None:
    settings = SessionSettings.from_scenario(parse_scenario('name = "x"\n'), ADDRESS, environ={})
    assert settings.ssl_context is None and settings.server_hostname is None
    assert settings.auth_mechanism is None
    assert (settings.auth_username, settings.auth_secret) == ("", "")
    assert settings.tls_mode == "none" and settings.greeting == "EHLO"


def test_missing_credentials_stop_the_run_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = parse_scenario(FULL)
    with pytest.raises(SessionSetupError, match="PW"):
        SessionSettings.from_scenario(scenario, ADDRESS, environ={})
    with pytest.raises(SessionSetupError, match="PW"):
        preflight(scenario, environ={})
    preflight(scenario, environ={"PW": "pw"})  # all there: nothing said
    # Without an environment given, the process's is read.
    monkeypatch.setenv("PW", "from-env")
    assert SessionSettings.from_scenario(scenario, ADDRESS).auth_secret == "from-env"
    preflight(scenario)
    monkeypatch.delenv("PW")
    with pytest.raises(SessionSetupError, match="PW"):
        preflight(scenario)


def test_a_tls_file_that_cannot_be_read_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    scenario = parse_scenario(
        f'name = "x"\n[tls]\nmode = "starttls"\nca_file = "{tmp_path / "none.pem"}"\n'
    )
    with pytest.raises(SessionSetupError, match="ca_file"):
        preflight(scenario, environ={})


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def server_context(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    return context


def offering_starttls(hang_up_after_tls: bool = False) -> Answer:
    """A server that says yes to everything and offers STARTTLS; it may close instead of
    answering the first EHLO over TLS."""
    rest = answers()
    ehlos = 0

    def answer(event: Any, server: ServerConnection) -> bytes | None:
        nonlocal ehlos
        if isinstance(event, CommandReceived) and event.step is Step.EHLO:
            ehlos += 1
            if hang_up_after_tls and ehlos > 1:
                return None
            return server.reply(250, [*EHLO_LINES, "STARTTLS"])
        if isinstance(event, CommandReceived) and event.step is Step.STARTTLS:
            return server.reply(220, "ready for TLS", "2.0.0")
        return rest(event, server)

    return answer


def tls_scenario(certs: Certs, mode: str, extra: str = "") -> str:
    return f'[tls]\nmode = "{mode}"\nca_file = "{certs.ca_file}"\nsni = "localhost"\n{extra}'


def test_starttls_shakes_hands_in_one_round_trip_and_greets_again(
    tmp_path: Path, certs: Certs
) -> None:
    outcome = converse(
        tmp_path, tls_scenario(certs, "starttls"), offering_starttls(), tls=server_context(certs)
    )
    assert outcome.labels() == [
        "connect", "banner", "EHLO", "STARTTLS", "TLS handshake", "EHLO",
        "MAIL", "RCPT", "DATA", "DATA end", "QUIT",
    ]  # fmt: skip
    # TLS 1.3: the client's hello, the server's flight back (one read), then the client's
    # Finished goes out with the next EHLO. Every step takes one THINK.
    assert all(s == pytest.approx(THINK, abs=1e-9) for _, s, _ in outcome.steps())
    assert outcome.record["outcome"] == "ok" and outcome.record["messages_accepted"] == 1
    assert outcome.tls_closed  # close_notify before the connection is closed


def test_implicit_tls_shakes_hands_before_the_banner(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(tmp_path, tls_scenario(certs, "implicit"), tls=server_context(certs))
    assert outcome.labels()[:4] == ["connect", "TLS handshake", "banner", "EHLO"]
    assert all(s == pytest.approx(THINK, abs=1e-9) for _, s, _ in outcome.steps())
    assert outcome.record["outcome"] == "ok" and outcome.tls_closed


def test_the_handshake_must_be_done_within_its_own_timeout(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "implicit") + '[timeouts]\n"TLS handshake" = "7s"\nbanner = "5s"\n',
        tls=server_context(certs),
    )
    # Read 1 is the handshake's, from the connect (1 THINK); read 2 the banner's, from the
    # end of the handshake (2 THINKs).
    assert outcome.deadlines[:2] == pytest.approx(
        [1000 + THINK + 7, 1000 + 2 * THINK + 5], abs=1e-9
    )


def test_a_handshake_not_done_in_time_says_so(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "implicit") + '[timeouts]\n"TLS handshake" = "7s"\n',
        tls=server_context(certs),
        throw_at=(1, StepTimeout()),
    )
    record = outcome.record
    assert (record["error"], record["error_step"]) == ("timeout", "TLS handshake")
    assert record["detail"] == "TLS handshake not done within 7s"


def test_a_certificate_not_trusted_is_a_tls_error_at_the_handshake(
    tmp_path: Path, certs: Certs
) -> None:
    scenario = '[tls]\nmode = "starttls"\nsni = "localhost"\n'  # the system's CAs only
    outcome = converse(tmp_path, scenario, offering_starttls(), tls=server_context(certs))
    record = outcome.record
    assert (record["error"], record["error_step"]) == ("TLS error", "TLS handshake")
    assert "certificate" in record["detail"]
    assert "QUIT" not in outcome.labels()


def test_a_server_that_hangs_up_right_after_the_handshake_is_a_tls_error(
    tmp_path: Path, certs: Certs
) -> None:
    # EHLO is answered before TLS (once), then the server closes instead of answering.
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "starttls"),
        offering_starttls(hang_up_after_tls=True),
        tls=server_context(certs),
    )
    record = outcome.record
    assert (record["error"], record["error_step"]) == ("TLS error", "EHLO")
    assert record["detail"] == (
        "the server closed the connection right after the TLS handshake, awaiting EHLO "
        "(did it refuse the client certificate?)"
    )


@pytest.mark.parametrize("read", [3, 4])
def test_a_reset_just_after_the_handshake_is_a_tls_error_and_later_is_not(
    tmp_path: Path, certs: Certs, read: int
) -> None:
    # Implicit TLS: read 1 is the handshake, read 2 the banner (the first reply over TLS),
    # read 3 EHLO's reply, read 4 MAIL's.
    error = ConnectionResetError(104, "reset by peer")
    first = converse(
        tmp_path,
        tls_scenario(certs, "implicit"),
        tls=server_context(certs),
        throw_at=(2, error),
    )
    assert first.record["error"] == "TLS error" and first.record["error_step"] == "banner"
    later = converse(
        tmp_path,
        tls_scenario(certs, "implicit"),
        tls=server_context(certs),
        throw_at=(read, error),
    )
    assert later.record["error"] == "connection reset"


def test_a_reset_at_the_connect_or_the_first_read_is_the_handshakes_with_implicit_tls(
    tmp_path: Path, certs: Certs
) -> None:
    # Implicit TLS: a server that resets at once is refused at the handshake, whether the
    # reset is told at the connect (read 0) or at the handshake's first read (read 1).
    records = [
        converse(
            tmp_path,
            tls_scenario(certs, "implicit"),
            tls=server_context(certs),
            throw_at=(read, ConnectionResetError(104, "reset by peer")),
        ).record
        for read in (0, 1)
    ]
    assert [(r["error"], r["error_step"]) for r in records] == [("TLS error", "TLS handshake")] * 2


# -- more of what a session counts and tells ------------------------------------------


def test_sessions_take_the_local_addresses_in_turn(tmp_path: Path) -> None:
    pool = '[target]\nsource = ["127.0.0.2", "127.0.0.3"]\n'
    settings = SessionSettings.from_scenario(parse_scenario('name = "x"\n' + pool), ADDRESS)
    assert settings.sources == (("127.0.0.2", 0), ("127.0.0.3", 0))
    # Session N connects from address N modulo the pool's size.
    assert converse(tmp_path, pool, number=2).session.source == ("127.0.0.2", 0)
    third = converse(tmp_path, pool, number=3).session
    assert third.source == ("127.0.0.3", 0) and third.address == ADDRESS
    assert converse(tmp_path, "").session.source is None


def test_tls_names_the_target_host_when_no_sni_is_given() -> None:
    scenario = parse_scenario('name = "x"\n[tls]\nmode = "starttls"\nverify = false\n')
    settings = SessionSettings.from_scenario(scenario, ADDRESS, environ={})
    assert settings.server_hostname == "127.0.0.1"


def test_a_session_cut_at_the_end_says_so(tmp_path: Path) -> None:
    outcome = converse(tmp_path, "", throw_at=(3, SessionCancelled()))
    assert outcome.record["detail"] == "cut off at the end of the run"
    assert outcome.record["error_step"] == "MAIL"


def test_a_pipelined_session_shows_each_command_and_quits_after_a_refusal(
    tmp_path: Path,
) -> None:
    outcome = converse(
        tmp_path,
        "[session]\nmessages = 2\npipelining = true\n",
        answers(MAIL=[(250, "ok", None), (451, "later", "4.3.0")]),
    )
    assert outcome.labels()[-1] == "QUIT" and outcome.codes("QUIT") == [221]
    sent = [line.sent for line in outcome.snapshot().failures[-1].transcript]
    assert sent[2:5] == [
        "MAIL FROM:<sender0@smtpbench.test> SIZE=2048",
        "RCPT TO:<user0@smtpbench.test>",
        "DATA",
    ]
    assert sent[-1] == "QUIT" and sent[-5].startswith("(message content, ")
    assert outcome.record["messages_accepted"] == 1 and outcome.record["messages_rejected"] == 1


def test_a_reply_already_read_is_taken_without_waiting_for_another_read(
    tmp_path: Path,
) -> None:
    plain = answers()

    def early_421(event: Any, server: ServerConnection) -> bytes | None:
        said = plain(event, server)
        if isinstance(event, CommandReceived) and event.step is Step.MAIL:
            return (said or b"") + b"421 4.3.2 closing now\r\n"  # before RCPT is even sent
        return said

    outcome = converse(tmp_path, "", early_421)
    # RCPT's reply was there when RCPT went out: no read, no time.
    assert outcome.steps()[-1] == ("RCPT", 0.0, 421)
    assert len(outcome.deadlines) == 3  # banner, EHLO, MAIL


def test_a_message_begun_and_never_ended_is_aborted(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        "[session]\nmessages = 2\n",
        answers(DATA_END=[(250, "ok", None), (0, "", None)]),
    )
    record = outcome.record
    assert record["messages_accepted"] == 1 and record["messages_aborted"] == 1
    assert record["detail"] == "server closed the connection awaiting DATA end"


def test_every_accepted_message_is_noted_in_turn_for_transit(tmp_path: Path) -> None:
    sends = _transit(tmp_path / "sent.txt")
    outcome = converse(
        tmp_path,
        "[session]\nmessages = 3\n",
        adjust=lambda s: dataclasses.replace(s, transit=sends),
    )
    sends.close()
    lines = (tmp_path / "sent.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["0", "0"], ["0", "1"], ["0", "2"]]
    assert outcome.record["messages_aborted"] == 0


def test_nothing_is_kept_for_transit_of_a_refused_message(tmp_path: Path) -> None:
    sends = _transit(tmp_path / "sent.txt")
    converse(
        tmp_path,
        "[session]\nmessages = 2\n",
        answers(MAIL=[(451, "later", None), (250, "ok", None)], DATA_END=(554, "no", None)),
        adjust=lambda s: dataclasses.replace(s, transit=sends),
    )
    sends.close()
    assert (tmp_path / "sent.txt").read_text() == ""
    assert sends._pending == {}  # each message's fingerprint let go once it was refused


def test_the_limit_told_is_the_soft_one(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, hard) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        outcome = converse(tmp_path, "", throw_at=(1, OSError(errno.EMFILE, "Too many")))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert f"(limit {lowered})" in outcome.record["detail"]


def test_enhanced_status_codes_are_counted_by_step(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path, "[session]\nrecipients = 2\n", answers(RCPT=(550, "no such user", "5.1.1"))
    )
    assert outcome.snapshot().enhanced_codes(Step.RCPT) == {"5.1.1": 2}


def test_a_reset_during_the_handshake_is_a_tls_error(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "implicit"),
        tls=server_context(certs),
        throw_at=(1, ConnectionResetError(104, "reset by peer")),
    )
    assert (outcome.record["error"], outcome.record["error_step"]) == (
        "TLS error",
        "TLS handshake",
    )


def test_a_close_notify_the_kernel_refuses_is_let_go(tmp_path: Path, certs: Certs) -> None:
    # Reset at the read awaiting EHLO's reply; the close_notify written then fails.
    class Broken(Wire):
        def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
            if self.clock.now > 1000 + 3.5 * THINK:  # from read 3 on
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(data, mark, began)

    outcome = converse(
        tmp_path,
        tls_scenario(certs, "implicit"),
        tls=server_context(certs),
        wire=Broken,
        throw_at=(3, ConnectionResetError(104, "reset by peer")),
    )
    assert outcome.record["error"] == "connection reset"


class Saying:
    """A conversation of the test's own: the banner, then each line as a NOOP would be."""

    number = 0

    def __init__(self, *lines: bytes) -> None:
        self.lines = lines

    def talk(self, s: Session) -> Talk:
        ready = yield from s.open()
        yield from s.banner(ready)
        for line in self.lines:
            yield from s.exchange(Step.NOOP, s.conn.send_raw(Step.NOOP, line))


def test_lines_in_a_transcript_are_shown_as_text_whatever_their_bytes(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        "",
        answers(NOOP=(502, "no", "5.5.1")),
        conversation=Saying(b"NOOP \xff\r\n", b"NOOP X\r\n", b"NOOP y \r\n"),
    )
    shown = [line.sent for line in outcome.snapshot().failures[-1].transcript]
    # Only the line end is left out: a space before it is the client's own.
    assert shown == ["(connect)", "NOOP \ufffd", "NOOP X", "NOOP y "]


def test_lmtp_shows_each_recipients_reply_to_the_message(tmp_path: Path) -> None:
    plain = answers()

    def per_recipient(event: Any, server: ServerConnection) -> bytes | None:
        said = plain(event, server)
        if isinstance(event, MessageReceived):  # one reply per accepted recipient
            return (said or b"") + b"452 4.2.2 mailbox full\r\n"
        return said

    outcome = converse(
        tmp_path,
        '[session]\ngreeting = "LHLO"\nrecipients = 2\npipelining = true\n',
        per_recipient,
    )
    assert outcome.codes("DATA end") == [250, 452]
    transcript = outcome.snapshot().failures[-1].transcript
    same = [line for line in transcript if line.reply == "452 4.2.2 mailbox full"]
    assert [line.sent for line in same] == ["(the same message, for the next recipient)"]


# -- several servers ------------------------------------------------------------------

HOSTS = (
    '[target]\nhosts = [{ host = "127.0.0.1", port = 25 }, { host = "127.0.0.2", port = 2526 }]\n'
)
SECOND = Address("127.0.0.2", 2526, socket.AF_INET, ("127.0.0.2", 2526))


def test_sessions_go_to_each_server_in_turn_with_its_own_tls_name(tmp_path: Path) -> None:
    tls = '[tls]\nmode = "starttls"\nverify = false\n'
    settings = SessionSettings.from_scenario(
        parse_scenario('name = "x"\n' + HOSTS + tls), ADDRESS, environ={}
    )
    assert settings.targets is not None and settings.targets.addresses == (ADDRESS, SECOND)
    assert settings.target_names == ("127.0.0.1", "127.0.0.2")
    first = converse(tmp_path, HOSTS + tls, number=2).session
    second = converse(tmp_path, HOSTS + tls, number=3).session
    assert (first.address, first.server_hostname) == (ADDRESS, "127.0.0.1")
    assert (second.address, second.server_hostname) == (SECOND, "127.0.0.2")
    plain = SessionSettings.from_scenario(parse_scenario('name = "x"\n' + HOSTS), ADDRESS)
    assert plain.target_names == (None, None)
    assert converse(tmp_path, HOSTS, number=1).session.server_hostname is None
    one = SessionSettings.from_scenario(parse_scenario('name = "x"\n'), ADDRESS)
    assert one.targets is None and one.target_names == ()


def test_every_session_for_a_domain_goes_to_the_same_server(tmp_path: Path) -> None:
    by_domain = HOSTS + 'choose = "recipient-domain"\n'
    for domain in ("a.example", "b.example", "c.example"):
        chosen = {
            converse(tmp_path, by_domain, number=n, domain=d).session.address
            for n in range(4)
            for d in (domain, domain.upper())
        }
        assert len(chosen) == 1, domain


def test_a_server_that_cannot_be_looked_up_stops_the_run_before_it_starts() -> None:
    hosts = '[target]\nhosts = [{ host = "127.0.0.1" }, { host = "mx.nowhere.invalid" }]\n'
    with pytest.raises(SessionSetupError, match=r"mx\.nowhere\.invalid"):
        SessionSettings.from_scenario(parse_scenario('name = "x"\n' + hosts), ADDRESS)


def test_content_files_are_checked_before_the_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    scenario = parse_scenario(f'name = "x"\n[content]\ncorpus = {{ path = "{corpus}" }}\n')
    with pytest.raises(ValueError, match=r"corpus: no \.eml files"):
        preflight(scenario, environ={})
    (corpus / "one.eml").write_bytes(b"From: a@b.test\r\nSubject: hi\r\n\r\nHello\r\n")
    preflight(scenario, environ={})


def test_quit_sent_with_the_last_messages_content_is_shown_as_quit(tmp_path: Path) -> None:
    outcome = converse(
        tmp_path,
        "[session]\nrecipients = 2\npipelining = true\n",
        answers(RCPT=[(550, "no", "5.1.1"), (250, "ok", None)]),
    )
    transcript = outcome.snapshot().failures[-1].transcript
    assert transcript[-2].sent.startswith("(message content, ")
    assert (transcript[-1].sent, transcript[-1].reply) == ("QUIT", "221 2.0.0 bye")


def test_an_auth_reply_already_read_is_taken_at_once(tmp_path: Path) -> None:
    plain = answers()

    def early_535(event: Any, server: ServerConnection) -> bytes | None:
        said = plain(event, server)
        if isinstance(event, CommandReceived) and event.step is Step.EHLO:
            return (said or b"") + b"535 5.7.8 no\r\n"  # before AUTH is even sent
        return said

    outcome = converse(
        tmp_path,
        '[auth]\nmechanism = "PLAIN"\nusername = "u"\npassword_env = "SECRET"\n',
        early_535,
    )
    assert [s for s in outcome.steps() if s[0] == "AUTH"] == [("AUTH", 0.0, 535)]
    assert len(outcome.deadlines) == 3  # banner, EHLO, QUIT: none for AUTH


def test_the_server_name_checked_is_the_one_asked_for(tmp_path: Path, certs: Certs) -> None:
    # The certificate is for localhost: any other name is refused.
    scenario = f'[tls]\nmode = "implicit"\nca_file = "{certs.ca_file}"\nsni = "mx.other.test"\n'
    outcome = converse(tmp_path, scenario, tls=server_context(certs))
    assert (outcome.record["error"], outcome.record["error_step"]) == (
        "TLS error",
        "TLS handshake",
    )


def test_pipelined_content_over_tls_goes_with_the_next_group(tmp_path: Path, certs: Certs) -> None:
    outcome = converse(
        tmp_path,
        tls_scenario(certs, "implicit") + "[session]\nmessages = 2\npipelining = true\n",
        tls=server_context(certs),
    )
    assert outcome.record["messages_accepted"] == 2 and outcome.tls_closed
    assert all(s == pytest.approx(THINK, abs=1e-9) for _, s, _ in outcome.steps())


def test_data_end_is_timed_from_the_last_byte_when_the_kernel_took_some_at_once(
    tmp_path: Path,
) -> None:
    # The kernel takes the first 1000 bytes of the content at once, the rest 0.4 ms later.
    outcome = converse(
        tmp_path,
        '[session]\nsize = "64KiB"\n',
        wire=lambda clock: Wire(clock, 60000, 0.0004, taken=1000),
    )
    data_end = [s for label, s, _ in outcome.steps() if label == "DATA end"]
    assert data_end == [pytest.approx(THINK - 0.0004, abs=1e-9)]


def test_each_write_over_tls_is_one_record(tmp_path: Path, certs: Certs) -> None:
    writes: list[bytes] = []

    class Keeping(Wire):
        def write(self, data: bytes, mark: int = 0, began: float = 0.0) -> bool:
            writes.append(data)
            return super().write(data, mark, began)

    auth = '[auth]\nmechanism = "PLAIN"\nusername = "u"\npassword_env = "SECRET"\n'
    scenario = tls_scenario(certs, "implicit") + auth
    logged_in = answers(AUTH=(235, "ok", "2.7.0"))
    converse(tmp_path, scenario, logged_in, tls=server_context(certs), wire=Keeping)

    def records(data: bytes) -> int:
        count = 0
        while data:  # a TLS record: type, version (2 bytes), length (2 bytes), body
            data = data[5 + int.from_bytes(data[3:5], "big") :]
            count += 1
        return count

    # After the client's hello and its Finished: EHLO, AUTH, MAIL, RCPT, DATA, the
    # content, QUIT and the close_notify, each in one record.
    assert [records(data) for data in writes[2:]] == [1] * 8
