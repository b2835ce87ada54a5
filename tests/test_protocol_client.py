"""The client state machine, driven with scripted server bytes (no sockets)."""

from __future__ import annotations

import pytest

from smtpbench.protocol.client import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Response,
    State,
)
from smtpbench.protocol.commands import format_parameters, mail_from, rcpt_to
from smtpbench.protocol.errors import LocalProtocolError, RemoteProtocolError
from smtpbench.protocol.message import dot_stuff, dot_unstuff
from smtpbench.protocol.steps import Step

PIPELINING_EHLO = b"250-sink\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"


def answer(conn: ClientConnection, data: bytes) -> list[Response]:
    conn.receive_data(data)
    events = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        assert isinstance(event, Response)
        events.append(event)


def greeted(ehlo_reply: bytes = b"250 sink\r\n") -> ClientConnection:
    conn = ClientConnection()
    answer(conn, b"220 ready\r\n")
    assert conn.ehlo("client.test") == b"EHLO client.test\r\n"
    answer(conn, ehlo_reply)
    assert conn.state is State.READY
    return conn


def test_a_whole_transaction_step_by_step() -> None:
    conn = ClientConnection()
    assert conn.state is State.BANNER
    [banner] = answer(conn, b"220 mx ESMTP\r\n")
    assert banner.step is Step.BANNER and conn.state is State.GREETED
    conn.ehlo("c")
    answer(conn, PIPELINING_EHLO)
    assert conn.capabilities.pipelining
    assert conn.mail("a@x.test", {"SIZE": "100"}) == b"MAIL FROM:<a@x.test> SIZE=100\r\n"
    answer(conn, b"250 2.1.0 ok\r\n")
    assert conn.rcpt("b@y.test") == b"RCPT TO:<b@y.test>\r\n"
    answer(conn, b"250 2.1.5 ok\r\n")
    assert conn.accepted_recipients == 1
    assert conn.data() == b"DATA\r\n"
    assert conn.state is State.DATA
    [reply] = answer(conn, b"354 go ahead\r\n")
    assert reply.step is Step.DATA and conn.state is State.CONTENT
    assert conn.message(b"Subject: x\r\n\r\n.hidden\r\n") == b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
    [end] = answer(conn, b"250 2.0.0 queued\r\n")
    assert end.step is Step.DATA_END and conn.state is State.READY
    conn.quit()
    answer(conn, b"221 bye\r\n")
    assert conn.state is State.CLOSED


def test_each_mail_from_line_says_what_it_was_asked_for() -> None:
    # The line made for the last message is sent again when it would say the same: never
    # when the sender or a parameter differs, nor when the caller changed its dict since.
    conn = greeted()
    sent = []
    params: dict[str, str | None] = {"SIZE": "100"}
    for address, size in [("a@x.test", "100"), ("a@x.test", "100"), ("a@x.test", "200")]:
        params["SIZE"] = size  # the same dict, changed in place
        sent.append(conn.mail(address, params))
        answer(conn, b"250 ok\r\n")
        conn.rset()
        answer(conn, b"250 ok\r\n")
    sent.append(conn.mail("b@x.test", {"SIZE": "200"}))
    answer(conn, b"250 ok\r\n")
    conn.rset()
    answer(conn, b"250 ok\r\n")
    sent.append(conn.mail("b@x.test", None))
    assert sent == [
        b"MAIL FROM:<a@x.test> SIZE=100\r\n",
        b"MAIL FROM:<a@x.test> SIZE=100\r\n",
        b"MAIL FROM:<a@x.test> SIZE=200\r\n",
        b"MAIL FROM:<b@x.test> SIZE=200\r\n",
        b"MAIL FROM:<b@x.test>\r\n",
    ]


def test_commands_out_of_order_are_local_errors() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError, match="state BANNER"):
        conn.ehlo("early-talker")
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="cannot send RCPT"):
        conn.rcpt("b@y.test")
    with pytest.raises(LocalProtocolError, match="content"):
        conn.message(b"x")
    conn.mail("a@x.test")
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.rcpt("b@y.test")  # the server did not offer pipelining


def test_pipelined_group_matches_replies_in_order() -> None:
    conn = greeted(PIPELINING_EHLO)
    wire = conn.mail("a@x.test") + conn.rcpt("b@y.test") + conn.rcpt("c@y.test") + conn.data()
    assert wire.count(b"\r\n") == 4
    assert conn.pending == (Step.MAIL, Step.RCPT, Step.RCPT, Step.DATA)
    with pytest.raises(LocalProtocolError, match="state DATA"):
        conn.noop()
    events = answer(conn, b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
    assert [(e.step, e.reply.code) for e in events] == [
        (Step.MAIL, 250),
        (Step.RCPT, 250),
        (Step.RCPT, 550),
        (Step.DATA, 354),
    ]
    assert conn.accepted_recipients == 1
    assert conn.state is State.CONTENT


def test_a_group_ender_stops_the_pipeline() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.noop()
    with pytest.raises(LocalProtocolError, match="NOOP ends a pipelined group"):
        conn.rcpt("b@y.test")


def test_rejected_mail_from_in_a_pipelined_group_ends_ready() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    conn.data()
    answer(conn, b"550 no\r\n503 need mail\r\n503 need rcpt\r\n")
    assert conn.state is State.READY
    conn.mail("a@x.test")  # a fresh transaction may start


def test_all_recipients_refused_but_354_needs_a_lone_dot() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    conn.data()
    answer(conn, b"250 ok\r\n550 no\r\n354 go\r\n")
    assert conn.accepted_recipients == 0
    assert conn.message(b"") == b".\r\n"


def test_bdat_chunks() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    assert conn.bdat(b"abc", last=False) == b"BDAT 3\r\nabc"
    assert conn.bdat(b"de", last=True) == b"BDAT 2 LAST\r\nde"
    events = answer(conn, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n")
    assert [e.step for e in events] == [Step.MAIL, Step.RCPT, Step.BDAT, Step.DATA_END]
    assert conn.state is State.READY


def test_bdat_needs_chunking() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        conn.bdat(b"x", last=True)


def test_rejecting_banner_allows_only_quit() -> None:
    conn = ClientConnection()
    answer(conn, b"554 go away\r\n")
    assert conn.state is State.REJECTED
    with pytest.raises(LocalProtocolError):
        conn.ehlo("c")
    conn.quit()


def test_421_closes_and_unsolicited_421_is_reported() -> None:
    conn = greeted()
    [event] = answer(conn, b"421 4.3.2 shutting down\r\n")
    assert event.reply.code == 421 and conn.state is State.CLOSED
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"421 bye\r\n")
    assert conn.state is State.CLOSED and conn.pending == ()


def test_reply_without_a_command_is_a_remote_error() -> None:
    conn = greeted()
    conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command outstanding"):
        conn.next_event()


def test_eof_reports_the_unanswered_command() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(Step.MAIL)
    assert conn.state is State.CLOSED


def test_helo_fallback_after_ehlo_refused() -> None:
    conn = ClientConnection()
    answer(conn, b"220 old\r\n")
    conn.ehlo("c")
    answer(conn, b"502 what\r\n")
    assert conn.state is State.GREETED
    conn.helo("c")
    answer(conn, b"250 ok\r\n")
    assert conn.state is State.READY


def test_starttls_restarts_the_session() -> None:
    conn = greeted(b"250-sink\r\n250 STARTTLS\r\n")
    conn.starttls()
    answer(conn, b"220 go ahead\r\n")
    assert conn.state is State.TLS
    conn.tls_established()
    assert conn.state is State.GREETED and not conn.capabilities.starttls


@pytest.mark.parametrize(
    "bad",
    ["a@x.test\r\nRCPT TO:<evil@x>", "a@x.test\n", "a<b@x.test", "nul\x00@x"],
)
def test_command_injection_is_refused(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        mail_from(bad)


def test_parameters_are_encoded() -> None:
    assert rcpt_to("b@y", {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;b@y"}) == (
        b"RCPT TO:<b@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y\r\n"
    )
    assert format_parameters(["BODY=8BITMIME", "SMTPUTF8"]) == " BODY=8BITMIME SMTPUTF8"
    with pytest.raises(LocalProtocolError):
        format_parameters(["A B"])


@pytest.mark.parametrize(
    "content",
    [b"", b".", b"a\r\n.\r\nb", b".start\r\n..two\r\nend", b"no final newline", b"x\r\n"],
)
def test_dot_stuffing_round_trips(content: bytes) -> None:
    stuffed = dot_stuff(content)
    body = stuffed[: -len(b".\r\n")]
    assert stuffed.endswith(b"\r\n.\r\n") or stuffed == b".\r\n"
    # No line of the body may be a lone dot, or the server would end the message early.
    assert b"\r\n.\r\n" not in b"\r\n" + body
    expected = content if content.endswith(b"\r\n") or not content else content + b"\r\n"
    assert dot_unstuff(body) == expected


@pytest.mark.parametrize("content", [b"", b"a\r\nb\r\n", b"no final newline", b"x\r\n"])
def test_content_without_dot_lines_is_terminated_as_when_looked_through(content: bytes) -> None:
    assert dot_stuff(content, ()) == dot_stuff(content)


@pytest.mark.parametrize(
    ("content", "dots"),
    [
        (b".start\r\n..two\r\nend", (0, 8)),
        (b"a\r\n.\r\nb\r\n", (3,)),
        (b"a\r\n.x\r\nb\r\n.\r\n", (3, 11)),
    ],
)
def test_dot_lines_said_where_they_are_are_stuffed_as_when_looked_for(
    content: bytes, dots: tuple[int, ...]
) -> None:
    assert dot_stuff(content, dots) == dot_stuff(content)


# -- RFC 5321 3.3: what each reply confirms ----------------------------------------------


def test_a_refused_mail_from_leaves_no_transaction_open() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    assert conn.state is State.MAIL  # committed by sending, until the reply
    [refused] = answer(conn, b"550 5.7.1 not you\r\n")
    assert refused.step is Step.MAIL and conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="cannot send RCPT in state READY"):
        conn.rcpt("b@y.test")
    assert conn.mail("other@x.test") == b"MAIL FROM:<other@x.test>\r\n"


def test_a_refused_starttls_keeps_the_plain_session() -> None:
    conn = greeted(b"250-sink\r\n250 STARTTLS\r\n")
    conn.starttls()
    answer(conn, b"454 4.7.0 TLS not available\r\n")
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="no STARTTLS to complete in state READY"):
        conn.tls_established()
    assert conn.capabilities.starttls  # nothing started over
    conn.mail("a@x.test")


def test_eof_with_nothing_pending_closes_and_names_no_command() -> None:
    conn = greeted()
    conn.quit()
    answer(conn, b"221 bye\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(None)
    assert conn.state is State.CLOSED
    idle = greeted()  # the server hangs up between transactions
    idle.receive_data(b"")
    assert idle.next_event() == ConnectionClosed(None)
    assert idle.state is State.CLOSED and idle.pending == ()


def test_eof_after_a_partial_reply_still_reports_the_command() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    conn.receive_data(b"250-first line of two\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(Step.MAIL)


# -- the state table at the top of client.py, command by command -----------------------

CHUNKING_EHLO = b"250-sink\r\n250-CHUNKING\r\n250 STARTTLS\r\n"


def _in_state(state: State) -> ClientConnection:
    """A connection in ``state`` with no reply owed, reached as a real client would."""
    conn = ClientConnection()
    if state is State.BANNER:
        return conn
    if state is State.REJECTED:
        answer(conn, b"554 no\r\n")
        return conn
    answer(conn, b"220 hi\r\n")
    if state is State.GREETED:
        return conn
    conn.ehlo("c")
    answer(conn, CHUNKING_EHLO)
    steps = {
        State.READY: [],
        State.MAIL: [(conn.mail, ("a@x.test",), b"250 ok\r\n")],
        State.RCPT: [
            (conn.mail, ("a@x.test",), b"250 ok\r\n"),
            (conn.rcpt, ("b@y.test",), b"250 ok\r\n"),
        ],
        State.DATA: [
            (conn.mail, ("a@x.test",), b"250 ok\r\n"),
            (conn.rcpt, ("b@y.test",), b"250 ok\r\n"),
            (conn.data, (), None),
        ],
        State.CONTENT: [
            (conn.mail, ("a@x.test",), b"250 ok\r\n"),
            (conn.rcpt, ("b@y.test",), b"250 ok\r\n"),
            (conn.data, (), b"354 go\r\n"),
        ],
        State.BDAT: [
            (conn.mail, ("a@x.test",), b"250 ok\r\n"),
            (conn.rcpt, ("b@y.test",), b"250 ok\r\n"),
            (conn.bdat, (b"abc", False), b"250 ok\r\n"),
        ],
        State.TLS: [(conn.starttls, (), b"220 go\r\n")],
        State.AUTH: [(conn.auth, (b"AUTH LOGIN\r\n",), b"334 VXNlcm5hbWU6\r\n")],
        State.CLOSED: [(conn.quit, (), b"221 bye\r\n")],
    }[state]
    for send, args, reply in steps:
        send(*args)
        if reply is not None:
            answer(conn, reply)
    assert conn.state is state
    return conn


COMMANDS = {
    "HELO": lambda c: c.helo("c"),
    "EHLO": lambda c: c.ehlo("c"),
    "LHLO": lambda c: c.lhlo("c"),
    "MAIL": lambda c: c.mail("a@x.test"),
    "RCPT": lambda c: c.rcpt("b@y.test"),
    "DATA": lambda c: c.data(),
    "BDAT": lambda c: c.bdat(b"x", last=False),
    "RSET": lambda c: c.rset(),
    "NOOP": lambda c: c.noop(),
    "VRFY": lambda c: c.vrfy("postmaster"),
    "EXPN": lambda c: c.expn("list"),
    "STARTTLS": lambda c: c.starttls(),
    "AUTH": lambda c: c.auth(b"AUTH PLAIN AGEAYg==\r\n"),
    "QUIT": lambda c: c.quit(),
    "content": lambda c: c.message(b"x"),
    "SASL response": lambda c: c.auth_response("dXNlcg=="),
}
MAY_SEND = {
    State.BANNER: set(),
    State.GREETED: {"HELO", "EHLO", "LHLO", "NOOP", "RSET", "VRFY", "EXPN", "QUIT"},
    State.READY: {
        *("MAIL", "HELO", "EHLO", "LHLO", "STARTTLS", "AUTH"),
        *("RSET", "NOOP", "VRFY", "EXPN", "QUIT"),
    },
    State.MAIL: {"RCPT", "RSET", "NOOP", "QUIT"},
    State.RCPT: {"RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT"},
    State.DATA: set(),
    State.CONTENT: {"content"},
    State.BDAT: {"BDAT", "RSET", "QUIT"},
    State.TLS: set(),
    State.AUTH: {"SASL response"},
    State.REJECTED: {"QUIT"},
    State.CLOSED: set(),
}


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_each_state_allows_exactly_the_commands_of_the_table(state: State) -> None:
    allowed = set()
    for name, send in COMMANDS.items():
        conn = _in_state(state)
        try:
            send(conn)
        except LocalProtocolError:
            continue
        allowed.add(name)
    assert allowed == MAY_SEND[state]


@pytest.mark.parametrize(
    ("send", "wire", "step"),
    [
        (lambda c: c.vrfy("postmaster"), b"VRFY postmaster\r\n", Step.VRFY),
        (lambda c: c.expn("staff"), b"EXPN staff\r\n", Step.EXPN),
        (lambda c: c.noop(), b"NOOP\r\n", Step.NOOP),
        (lambda c: c.rset(), b"RSET\r\n", Step.RSET),
        (lambda c: c.helo("me"), b"HELO me\r\n", Step.HELO),
        (lambda c: c.lhlo("me"), b"LHLO me\r\n", Step.LHLO),
        (lambda c: c.starttls(), b"STARTTLS\r\n", Step.STARTTLS),
        (lambda c: c.quit(), b"QUIT\r\n", Step.QUIT),
    ],
)
def test_commands_go_out_as_written_and_wait_for_their_reply(
    send: object, wire: bytes, step: Step
) -> None:
    conn = greeted()
    assert conn.outstanding == 0 and conn.next_reply is None and conn.pending == ()
    assert send(conn) == wire  # type: ignore[operator]
    assert conn.outstanding == 1 and conn.next_reply is step and conn.pending == (step,)


# -- RFC 2920: which commands end a pipelined group -------------------------------------

GROUP_ENDERS = {
    "EHLO": lambda c: c.ehlo("c"),
    "HELO": lambda c: c.helo("c"),
    "LHLO": lambda c: c.lhlo("c"),
    "NOOP": lambda c: c.noop(),
    "VRFY": lambda c: c.vrfy("x"),
    "EXPN": lambda c: c.expn("x"),
    "STARTTLS": lambda c: c.starttls(),
    "AUTH": lambda c: c.auth(b"AUTH PLAIN AGEAYg==\r\n"),
    "QUIT": lambda c: c.quit(),
}


@pytest.mark.parametrize("name", list(GROUP_ENDERS))
def test_nothing_may_follow_a_group_ender_before_its_reply(name: str) -> None:
    conn = greeted(PIPELINING_EHLO)
    GROUP_ENDERS[name](conn)
    conn.state = State.READY  # as if the state allowed RSET: the group rule alone refuses
    with pytest.raises(LocalProtocolError) as caught:
        conn.rset()
    assert str(caught.value) == (
        f"cannot send RSET before the reply to {name}: {name} ends a pipelined group"
    )


def test_data_ends_a_group_even_with_pipelining() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    conn.data()
    conn.state = State.RCPT  # as if allowed: the group rule alone must refuse
    with pytest.raises(LocalProtocolError, match="DATA ends a pipelined group"):
        conn.rset()


def test_mail_rcpt_and_rset_may_be_pipelined() -> None:
    conn = greeted(PIPELINING_EHLO)
    wire = conn.rset() + conn.mail("a@x.test") + conn.rcpt("b@y.test") + conn.rset()
    assert wire == b"RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRSET\r\n"
    assert conn.outstanding == 4


def test_without_pipelining_every_command_waits() -> None:
    conn = greeted()
    conn.rset()
    with pytest.raises(LocalProtocolError) as caught:
        conn.mail("a@x.test")
    assert str(caught.value) == (
        "cannot send MAIL before the reply to RSET: the server did not advertise PIPELINING"
    )


# -- what each reply confirms --------------------------------------------------------------


def test_helo_accepted_learns_no_extensions() -> None:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    conn.helo("c")
    answer(conn, b"250-mx\r\n250 PIPELINING\r\n")
    assert conn.state is State.READY and not conn.capabilities.pipelining


def test_lhlo_learns_extensions_and_marks_lmtp() -> None:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    assert not conn.lmtp
    conn.lhlo("c")
    assert conn.lmtp
    answer(conn, b"250-mx\r\n250 PIPELINING\r\n")
    assert conn.state is State.READY and conn.capabilities.pipelining


def test_rset_accepted_ends_the_transaction() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    conn.rset()
    answer(conn, b"250 flushed\r\n")
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="cannot send DATA in state READY"):
        conn.data()


def test_rset_before_ehlo_does_not_skip_the_greeting() -> None:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    conn.rset()
    answer(conn, b"250 ok\r\n")
    assert conn.state is State.GREETED  # RSET does not say hello


def test_a_refused_rset_keeps_the_transaction() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rset()
    answer(conn, b"500 no\r\n")
    assert conn.state is State.MAIL


def test_a_refused_recipient_is_not_counted_and_opens_nothing() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"550 no such user\r\n")
    assert conn.state is State.MAIL and conn.accepted_recipients == 0
    with pytest.raises(LocalProtocolError, match="cannot send DATA in state MAIL"):
        conn.data()
    conn.rcpt("c@y.test")
    answer(conn, b"251 will forward\r\n")
    assert conn.state is State.RCPT and conn.accepted_recipients == 1


def test_a_recipient_accepted_after_mail_was_refused_counts_for_nothing() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    answer(conn, b"550 no\r\n250 ok\r\n")  # a confused server
    assert conn.state is State.READY and conn.accepted_recipients == 0


def test_a_new_mail_from_starts_the_recipient_count_again() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    conn.rset()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n")
    assert conn.accepted_recipients == 0 and conn.state is State.MAIL


def test_data_refused_returns_to_ready() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    conn.data()
    [refused] = answer(conn, b"554 no data for you\r\n")
    assert refused.step is Step.DATA and conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="cannot send message content in state READY"):
        conn.message(b"x")


def test_data_answered_250_is_not_an_invitation_to_send() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    conn.data()
    answer(conn, b"250 odd\r\n")  # only 354 opens the content
    assert conn.state is State.READY


def test_a_refused_bdat_chunk_ends_the_transaction() -> None:
    conn = greeted(CHUNKING_EHLO)
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    conn.bdat(b"abc", last=False)
    assert conn.state is State.BDAT
    [refused] = answer(conn, b"552 too big\r\n")
    assert refused.step is Step.BDAT and conn.state is State.READY


def test_the_last_bdat_chunk_is_the_end_of_data() -> None:
    conn = greeted(CHUNKING_EHLO)
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    conn.rcpt("b@y.test")
    answer(conn, b"250 ok\r\n")
    assert conn.bdat(b"whole", last=True) == b"BDAT 5 LAST\r\nwhole"
    assert conn.state is State.READY and conn.pending == (Step.DATA_END,)
    [end] = answer(conn, b"250 queued\r\n")
    assert end.step is Step.DATA_END and conn.state is State.READY


def test_the_message_is_dot_stuffed_and_its_reply_ends_the_transaction() -> None:
    conn = _in_state(State.CONTENT)
    assert conn.message(b".a\r\nb") == b"..a\r\nb\r\n.\r\n"
    assert conn.pending == (Step.DATA_END,) and conn.state is State.READY
    [end] = answer(conn, b"451 try later\r\n")
    assert end.step is Step.DATA_END and conn.state is State.READY


def test_quit_is_closed_whatever_the_reply() -> None:
    conn = greeted()
    conn.quit()
    assert conn.state is State.CLOSED
    answer(conn, b"500 what\r\n")
    assert conn.state is State.CLOSED


def test_an_unsolicited_421_is_the_answer_to_the_last_command() -> None:
    conn = greeted()
    [event] = answer(conn, b"421 closing\r\n")
    assert event.step is Step.EHLO and event.reply.code == 421


def test_421_in_a_pipelined_group_drops_every_other_reply_owed() -> None:
    conn = greeted(PIPELINING_EHLO)
    conn.mail("a@x.test")
    conn.rcpt("b@y.test")
    conn.rcpt("c@y.test")
    [event] = answer(conn, b"421 shutting down\r\n")
    assert event.step is Step.MAIL and conn.pending == () and conn.state is State.CLOSED


def test_a_long_reply_line_is_refused_at_the_clients_limit() -> None:
    conn = ClientConnection(max_line_length=20)
    conn.receive_data(b"220 " + b"x" * 30 + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="longer than 20 bytes"):
        conn.next_event()


def test_starttls_cannot_complete_while_replies_are_owed() -> None:
    conn = _in_state(State.TLS)
    conn.tls_established()
    assert conn.state is State.GREETED
    with pytest.raises(LocalProtocolError, match="no STARTTLS to complete in state GREETED"):
        conn.tls_established()


# -- RFC 4954: AUTH -----------------------------------------------------------------------


def test_auth_challenges_and_answers_until_235() -> None:
    conn = greeted()
    assert conn.auth(b"AUTH LOGIN\r\n") == b"AUTH LOGIN\r\n"
    [challenge] = answer(conn, b"334 VXNlcm5hbWU6\r\n")
    assert challenge.step is Step.AUTH and conn.state is State.AUTH
    assert conn.auth_response("dXNlcg==") == b"dXNlcg==\r\n"
    answer(conn, b"334 UGFzc3dvcmQ6\r\n")
    assert conn.auth_response("cGFzcw==") == b"cGFzcw==\r\n"
    [done] = answer(conn, b"235 2.7.0 ok\r\n")
    assert done.step is Step.AUTH and conn.state is State.READY


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"PLAIN AGEAYg==\r\n", "starts with AUTH and ends with CRLF"),
        (b"AUTH PLAIN AGEAYg==", "starts with AUTH and ends with CRLF"),
        (b"AUTHPLAIN\r\n", "starts with AUTH and ends with CRLF"),
    ],
)
def test_an_auth_line_must_be_a_whole_auth_command(line: bytes, says: str) -> None:
    with pytest.raises(LocalProtocolError, match=says):
        greeted().auth(line)
    assert greeted().auth(b"auth plain AGEAYg==\r\n") == b"auth plain AGEAYg==\r\n"


def test_sasl_responses_are_one_line_and_only_in_an_exchange() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="no AUTH challenge to answer in state READY"):
        conn.auth_response("x")
    conn.auth(b"AUTH LOGIN\r\n")
    answer(conn, b"334 VXNlcm5hbWU6\r\n")
    with pytest.raises(LocalProtocolError, match="cannot start AUTH again"):
        conn.auth(b"AUTH LOGIN\r\n")
    for bad in ("a\rb", "a\nb"):
        with pytest.raises(LocalProtocolError, match="a SASL response is one line"):
            conn.auth_response(bad)


# -- RFC 2033: LMTP's end of data gets one reply per accepted recipient ------------------


def _lmtp_with_recipients(accepted: int, refused: int) -> ClientConnection:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    conn.lhlo("c")
    answer(conn, b"250-x\r\n250 CHUNKING\r\n")
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    for _ in range(accepted):
        conn.rcpt("b@y.test")
        answer(conn, b"250 ok\r\n")
    for _ in range(refused):
        conn.rcpt("c@y.test")
        answer(conn, b"550 no\r\n")
    return conn


def test_lmtp_last_chunk_is_answered_once_per_accepted_recipient() -> None:
    conn = _lmtp_with_recipients(accepted=3, refused=1)
    conn.bdat(b"hi\r\n", last=True)
    assert conn.pending == (Step.DATA_END,) * 3
    events = answer(conn, b"250 a\r\n250 b\r\n452 c\r\n")
    assert [e.step for e in events] == [Step.DATA_END] * 3 and conn.state is State.READY


def test_lmtp_message_with_one_recipient_gets_one_reply() -> None:
    conn = _lmtp_with_recipients(accepted=1, refused=0)
    conn.data()
    answer(conn, b"354 go\r\n")
    conn.message(b"hi\r\n")
    assert conn.pending == (Step.DATA_END,)


def test_esmtp_end_of_data_gets_one_reply_whatever_the_recipients() -> None:
    conn = greeted(CHUNKING_EHLO)
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    for _ in range(3):
        conn.rcpt("b@y.test")
        answer(conn, b"250 ok\r\n")
    conn.bdat(b"hi\r\n", last=True)
    assert conn.pending == (Step.DATA_END,)


# -- details a driver relies on --------------------------------------------------------------


def test_a_new_connection_owes_only_the_banner() -> None:
    conn = ClientConnection()
    assert conn.pending == (Step.BANNER,) and conn.next_reply is Step.BANNER
    assert conn.accepted_recipients == 0
    assert conn.lmtp is False
    assert conn.next_event() is NEED_DATA and repr(NEED_DATA) == "NEED_DATA"


def test_a_421_right_after_the_greeting_answers_the_banner() -> None:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    [event] = answer(conn, b"421 changed my mind\r\n")
    assert event.step is Step.BANNER and conn.state is State.CLOSED


@pytest.mark.parametrize(
    ("code", "positive"), [(200, True), (259, True), (300, False), (354, False)]
)
def test_only_2yz_replies_confirm_a_command(code: int, positive: bool) -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, f"{code} text\r\n".encode())
    assert conn.state is (State.MAIL if positive else State.READY)


def test_recipient_parameters_go_out_with_the_address() -> None:
    conn = greeted()
    conn.mail("a@x.test")
    answer(conn, b"250 ok\r\n")
    assert conn.rcpt("b@y.test", {"NOTIFY": "NEVER"}) == b"RCPT TO:<b@y.test> NOTIFY=NEVER\r\n"


def _message_of(call: object) -> str:
    with pytest.raises(LocalProtocolError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value)


def test_local_errors_say_what_was_refused_and_why() -> None:
    conn = greeted()
    assert _message_of(lambda: conn.auth(b"PLAIN x\r\n")) == (
        "an AUTH command line starts with AUTH and ends with CRLF"
    )
    conn.auth(b"AUTH LOGIN\r\n")
    answer(conn, b"334 VXNlcm5hbWU6\r\n")
    assert _message_of(lambda: conn.auth(b"AUTH LOGIN\r\n")) == (
        "cannot start AUTH again in the middle of an AUTH exchange"
    )
    assert _message_of(lambda: conn.auth_response("a\nb")) == "a SASL response is one line"
    plain = _in_state(State.RCPT)
    plain.capabilities = greeted().capabilities  # no CHUNKING
    assert _message_of(lambda: plain.bdat(b"x", last=True)) == (
        "cannot send BDAT: the server did not advertise CHUNKING"
    )
    lmtp = ClientConnection()
    answer(lmtp, b"220 hi\r\n")
    lmtp.lhlo("c")
    answer(lmtp, b"250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    lmtp.mail("a@x.test")
    lmtp.rcpt("b@y.test")
    assert _message_of(lambda: lmtp.bdat(b"x", last=True)) == (
        "cannot send the last BDAT chunk before every RCPT reply: in LMTP it gets "
        "one reply per accepted recipient"
    )


# -- replaying a recorded client: commands as they were sent, outside the rules ----------


def test_send_raw_sends_as_recorded_and_owes_the_replies_said() -> None:
    conn = ClientConnection()  # the banner not even in: no rule is checked
    assert conn.send_raw(Step.MAIL, b"MAIL FROM:<a@x.test>\r\n") == b"MAIL FROM:<a@x.test>\r\n"
    assert conn.pending == (Step.BANNER, Step.MAIL) and conn.state is State.MAIL
    conn.send_raw(Step.RCPT, b"RCPT TO:<b@y.test>\r\n", replies=2)
    assert conn.pending == (Step.BANNER, Step.MAIL, Step.RCPT, Step.RCPT)
    assert conn.state is State.RCPT


def test_send_raw_of_an_unknown_verb_is_owed_as_noop_and_moves_nothing() -> None:
    conn = greeted()
    conn.send_raw(Step.NOOP, b"XYZZY\r\n")
    assert conn.pending == (Step.NOOP,) and conn.state is State.READY
    [event] = answer(conn, b"502 what\r\n")
    assert event.step is Step.NOOP and conn.state is State.READY


def test_send_raw_without_a_reply_owes_nothing() -> None:
    conn = greeted()
    conn.send_raw(Step.MAIL, b"MAIL FROM:<a@x.test>\r\n", replies=0)
    assert conn.pending == () and conn.state is State.READY
    [event] = answer(conn, b"421 bye\r\n")  # unasked: it answers the last command owed one
    assert event.step is Step.EHLO


def test_send_raw_of_lhlo_means_lmtp_even_unanswered() -> None:
    conn = ClientConnection()
    answer(conn, b"220 hi\r\n")
    conn.send_raw(Step.LHLO, b"LHLO c\r\n", replies=0)
    assert conn.lmtp is True
    other = ClientConnection()
    other.send_raw(Step.EHLO, b"EHLO c\r\n")
    assert other.lmtp is False


def test_expect_owes_more_replies_to_a_step() -> None:
    conn = greeted()
    conn.expect(Step.DATA_END, 2)
    assert conn.pending == (Step.DATA_END, Step.DATA_END)
    conn.expect(Step.DATA_END, 0)
    assert conn.outstanding == 2


def test_received_is_receive_data_then_next_event() -> None:
    conn = ClientConnection()
    assert conn.received(b"220 ") is NEED_DATA
    event = conn.received(b"hi\r\n")
    assert isinstance(event, Response) and event.step is Step.BANNER
    assert conn.state is State.GREETED
    assert conn.received(b"") == ConnectionClosed(None)
    assert conn.state is State.CLOSED


def test_idle_until_bytes_or_the_end_are_waiting() -> None:
    conn = ClientConnection()
    assert conn.idle
    conn.receive_data(b"220 hi\r\n250 extra")
    assert not conn.idle  # a whole reply waits to be taken
    conn.next_event()
    assert not conn.idle  # part of another
    closed = ClientConnection()
    closed.receive_data(b"")
    assert not closed.idle  # the end waits to be reported
    fresh = greeted()
    assert fresh.idle


def test_an_unasked_421_after_a_raw_command_answers_that_command() -> None:
    conn = greeted()
    conn.send_raw(Step.MAIL, b"MAIL FROM:<a@x.test>\r\n")
    answer(conn, b"250 ok\r\n")
    [event] = answer(conn, b"421 bye\r\n")
    assert event.step is Step.MAIL


def test_xclient_needs_the_extension_and_a_220_starts_the_session_over() -> None:
    plain = greeted()
    with pytest.raises(
        LocalProtocolError, match=r"^cannot send XCLIENT: the server did not advertise it$"
    ):
        plain.xclient({"ADDR": "192.0.2.7"})
    conn = greeted(b"250-sink\r\n250-PIPELINING\r\n250 XCLIENT ADDR NAME HELO\r\n")
    assert conn.xclient({"ADDR": "192.0.2.7", "NAME": "client.test"}) == (
        b"XCLIENT ADDR=192.0.2.7 NAME=client.test\r\n"
    )
    [response] = answer(conn, b"220 sink ESMTP\r\n")
    assert response.step is Step.XCLIENT
    # As after STARTTLS: the client greets again, and knows no extension until then.
    assert conn.state is State.GREETED
    assert not conn.capabilities.pipelining and not conn.capabilities.has("XCLIENT")
    conn.ehlo("client.test")
    answer(conn, b"250-sink\r\n250 PIPELINING\r\n")
    assert conn.state is State.READY and conn.capabilities.pipelining


def test_a_refused_xclient_keeps_the_session_and_its_extensions() -> None:
    conn = greeted(b"250-sink\r\n250-PIPELINING\r\n250 XCLIENT ADDR\r\n")
    conn.xclient({"ADDR": "192.0.2.7"})
    answer(conn, b"550 5.7.0 not authorized\r\n")
    assert conn.state is State.READY
    assert conn.capabilities.pipelining and conn.capabilities.has("XCLIENT")


def test_a_220_to_another_command_does_not_start_the_session_over() -> None:
    conn = greeted(b"250-sink\r\n250 PIPELINING\r\n")
    conn.noop()
    answer(conn, b"220 odd but harmless\r\n")
    assert conn.state is State.READY and conn.capabilities.pipelining
    conn.mail("a@x.test")  # still in the session: a transaction may begin
