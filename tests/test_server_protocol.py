"""The sans-IO server state machine, with no socket."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol.errors import LocalProtocolError
from smtpbench.protocol.server import (
    MAX_AUTH_LINE,
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    Event,
    LineTooLong,
    MessageReceived,
    NeedData,
    ServerConnection,
    State,
    UnrecognizedCommand,
    parse_bdat_argument,
    parse_path_argument,
)
from smtpbench.protocol.steps import Step

POSITIVE = {
    Step.HELO: 250,
    Step.EHLO: 250,
    Step.LHLO: 250,
    Step.MAIL: 250,
    Step.RCPT: 250,
    Step.DATA: 354,
    Step.BDAT: 250,
    Step.RSET: 250,
    Step.NOOP: 250,
    Step.VRFY: 252,
    Step.EXPN: 252,
    Step.QUIT: 221,
    Step.STARTTLS: 220,
    Step.AUTH: 235,
}


def greeted(**kwargs: object) -> ServerConnection:
    conn = ServerConnection(**kwargs)  # type: ignore[arg-type]
    conn.reply(220, "test ESMTP")
    return conn


def answer(conn: ServerConnection, event: Event) -> bytes:
    """A permissive server: yes to everything in sequence, 503 otherwise."""
    if isinstance(event, CommandReceived):
        if not event.allowed:
            return conn.reply(503, "Bad sequence of commands", "5.5.1")
        return conn.reply(POSITIVE[event.step], "ok")
    if isinstance(event, MessageReceived):
        return conn.reply(250, "queued", "2.0.0")
    if isinstance(event, LineTooLong):
        return conn.reply(500, "Line too long", "5.5.6")
    if isinstance(event, AuthResponse):
        return conn.reply(235, "ok", "2.7.0")
    return conn.reply(500, "Command unrecognized", "5.5.1")


def drain(conn: ServerConnection, data: bytes = b"") -> list[Event]:
    """Feed, then take and answer every event up to NeedData or ConnectionClosed."""
    if data:
        conn.receive_data(data)
    events: list[Event] = []
    for _ in range(10_000):
        event = conn.next_event()
        events.append(event)
        if isinstance(event, NeedData | ConnectionClosed):
            return events
        answer(conn, event)
    raise AssertionError("too many events")


def steps(events: list[Event]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, CommandReceived):
            out.append(event.step if event.allowed else ("bad", event.step))
        else:
            out.append(type(event).__name__)
    return out


def test_banner_is_the_first_pending_reply() -> None:
    conn = ServerConnection()
    assert conn.awaiting_reply and conn.pending_step is Step.BANNER
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    assert conn.reply(220, "sink ESMTP") == b"220 sink ESMTP\r\n"
    assert conn.state is State.CONNECTED
    assert isinstance(conn.next_event(), NeedData)


def test_pipelined_commands_in_one_feed_come_out_in_order() -> None:
    conn = greeted(keep_data=True)
    events = drain(conn, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
    assert steps(events) == [Step.EHLO, Step.MAIL, Step.RCPT, Step.RCPT, Step.DATA, "NeedData"]
    assert conn.state is State.DATA
    events = drain(conn, b"Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<a@x>\r\nQUIT\r\n")
    assert steps(events) == ["MessageReceived", Step.MAIL, Step.QUIT, "ConnectionClosed"]
    message = events[0]
    assert isinstance(message, MessageReceived)
    assert message.data == b"Subject: x\r\n\r\nhi\r\n"
    assert message.size == len(message.data)


def test_next_event_waits_for_the_reply() -> None:
    conn = greeted()
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and event.step is Step.NOOP
    assert conn.pending_step is Step.NOOP
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.reply(250, "ok", "2.0.0")
    assert isinstance(conn.next_event(), CommandReceived)


def test_reply_formats_multiline_with_enhanced_codes() -> None:
    conn = greeted()
    conn.receive_data(b"EHLO c\r\n")
    conn.next_event()
    assert conn.reply(250, ["sink", "PIPELINING", "SIZE 10"]) == (
        b"250-sink\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    )
    conn.receive_data(b"NOOP\r\n")
    conn.next_event()
    assert conn.reply(250, ["a", "b"], "2.0.0") == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"


@pytest.mark.parametrize(
    ("code", "text", "enhanced"),
    [(250, "x", "5.0.0"), (250, "x", "2.0"), (99, "x", None), (250, "a\r\nb", None)],
)
def test_reply_rejects_bad_replies(code: int, text: str, enhanced: str | None) -> None:
    conn = greeted()
    conn.receive_data(b"NOOP\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.reply(code, text, enhanced)


def test_reply_without_pending_event_is_refused_except_421() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError):
        conn.reply(250, "ok")
    assert conn.reply(421, "going down", "4.3.2") == b"421 4.3.2 going down\r\n"
    assert conn.state is State.CLOSED
    assert isinstance(conn.next_event(), ConnectionClosed)


MESSAGE = b".leading dot\r\nplain\r\n..two dots\r\n.\r\n"  # content as sent, terminator included
EXPECTED = b"leading dot\r\nplain\r\n.two dots\r\n"


def open_data(keep_data: bool = True) -> ServerConnection:
    conn = greeted(keep_data=keep_data)
    drain(conn, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
    assert conn.state is State.DATA
    return conn


@pytest.mark.parametrize("split", range(len(MESSAGE) + 1))
def test_data_split_at_every_byte(split: int) -> None:
    conn = open_data()
    first = drain(conn, MESSAGE[:split]) if split else []
    assert (
        steps(first) == (["MessageReceived", "NeedData"] if split == len(MESSAGE) else ["NeedData"])
        or not first
    )
    events = [*first[:-1], *drain(conn, MESSAGE[split:] + b"QUIT\r\n")]
    message = events[0]
    assert isinstance(message, MessageReceived)
    assert message.data == EXPECTED
    assert message.size == len(EXPECTED)
    assert steps(events[1:]) == [Step.QUIT, "ConnectionClosed"]


@settings(max_examples=200, deadline=None)
@given(
    body=st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\r", b"\n", b"x.y"]), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    keep=st.booleans(),
)
def test_data_any_content_any_splits(body: list[bytes], cuts: list[int], keep: bool) -> None:
    content = b"".join(body)
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    lines = content.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    wire = stuffed + b".\r\n"
    conn = open_data(keep_data=keep)
    points = sorted({min(cut, len(wire)) for cut in cuts} | {0, len(wire)})
    received: list[MessageReceived] = []
    for start, stop in itertools.pairwise(points):
        for event in drain(conn, wire[start:stop]):
            if isinstance(event, MessageReceived):
                received.append(event)
    assert len(received) == 1
    assert received[0].size == len(content)
    assert received[0].data == (content if keep else None)
    assert conn.state is State.GREETED


def test_empty_message() -> None:
    conn = open_data()
    events = drain(conn, b".\r\n")
    assert events[0] == MessageReceived(0, b"", Step.DATA)


def test_large_message_without_keep_data_is_counted_not_kept() -> None:
    conn = open_data(keep_data=False)
    line = b"x" * 998 + b"\r\n"
    for _ in range(100):
        assert drain(conn, line) == [NeedData()]
    assert len(conn._buf) <= 4  # content is not accumulated
    events = drain(conn, b".\r\n")
    assert events[0] == MessageReceived(100 * len(line), None, Step.DATA)


def test_max_data_size_stops_keeping_but_still_counts() -> None:
    conn = greeted(keep_data=True, max_data_size=10)
    drain(conn, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
    events = drain(conn, b"0123456789abcdef\r\n.\r\n")
    assert events[0] == MessageReceived(18, None, Step.DATA)


def test_bdat_chunks() -> None:
    conn = greeted(keep_data=True)
    drain(conn, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    events = drain(conn, b"BDAT 5\r\nhel")
    assert steps(events) == ["NeedData"]  # the chunk is read before the command is answered
    events = drain(conn, b"lo")
    assert steps(events) == [Step.BDAT, "NeedData"]
    assert conn.state is State.BDAT
    events = drain(conn, b"BDAT 8 LAST\r\n\r\n.worldBDAT 0 LAST\r\n")
    assert events[0] == MessageReceived(13, b"hello\r\n.world", Step.BDAT)
    assert conn.state is State.GREETED
    assert steps(events[1:]) == [("bad", Step.BDAT), "NeedData"]


BDAT_STREAM = b"BDAT 4\r\nab\r\nBDAT 5 LAST\r\n.\r\n.\nNOOP\r\n"


@pytest.mark.parametrize("split", range(len(BDAT_STREAM) + 1))
def test_bdat_split_at_every_byte(split: int) -> None:
    conn = greeted(keep_data=True)
    drain(conn, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    events = drain(conn, BDAT_STREAM[:split])[:-1] if split else []
    events += drain(conn, BDAT_STREAM[split:])
    assert steps(events) == [Step.BDAT, "MessageReceived", Step.NOOP, "NeedData"]
    assert events[1] == MessageReceived(9, b"ab\r\n.\r\n.\n", Step.BDAT)


def test_bdat_zero_last_and_chunk_of_refused_bdat_is_skipped() -> None:
    conn = greeted(keep_data=True)
    # BDAT before RCPT is out of sequence, but its 4 octets are still read and dropped.
    events = drain(conn, b"EHLO c\r\nBDAT 4\r\nQUITMAIL FROM:<a@x>\r\n")
    assert steps(events) == [Step.EHLO, ("bad", Step.BDAT), Step.MAIL, "NeedData"]
    events = drain(conn, b"RCPT TO:<b@y>\r\nBDAT 0 LAST\r\n")
    assert events[1] == MessageReceived(0, b"", Step.BDAT)


def test_refused_bdat_fails_the_transaction() -> None:
    conn = greeted()
    drain(conn, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    conn.receive_data(b"BDAT 3\r\nabcBDAT 2 LAST\r\nxy")
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and event.step is Step.BDAT
    assert conn.message_size == 3
    conn.reply(552, "too big", "5.3.4")
    assert conn.state is State.GREETED
    # RFC 3030: BDATs already in the pipeline after a failed one are read and refused.
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and not event.allowed


def test_bdat_with_bad_argument_reads_no_chunk() -> None:
    conn = greeted()
    events = drain(conn, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT x\r\nNOOP\r\n")
    assert steps(events)[-3:] == [Step.BDAT, Step.NOOP, "NeedData"]
    assert conn.state is State.RCPT


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (b"MAIL FROM:<a@x>\r\n", [("bad", Step.MAIL)]),
        (b"EHLO c\r\nRCPT TO:<b@y>\r\n", [Step.EHLO, ("bad", Step.RCPT)]),
        (b"EHLO c\r\nMAIL FROM:<a@x>\r\nDATA\r\n", [Step.EHLO, Step.MAIL, ("bad", Step.DATA)]),
        (
            b"EHLO c\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\n",
            [Step.EHLO, Step.MAIL, ("bad", Step.MAIL)],
        ),
        (b"HELO c\r\nSTARTTLS\r\n", [Step.HELO, ("bad", Step.STARTTLS)]),
        (b"HELO c\r\nAUTH PLAIN AAAA\r\n", [Step.HELO, ("bad", Step.AUTH)]),
        (
            b"EHLO c\r\nAUTH PLAIN AAAA\r\nAUTH PLAIN AAAA\r\n",
            [Step.EHLO, Step.AUTH, ("bad", Step.AUTH)],
        ),
        (b"RSET\r\nNOOP\r\nVRFY x\r\n", [Step.RSET, Step.NOOP, Step.VRFY]),
        (
            b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRSET\r\nRCPT TO:<b@y>\r\n",
            [Step.EHLO, Step.MAIL, Step.RCPT, Step.RSET, ("bad", Step.RCPT)],
        ),
        (
            b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 1\r\nxDATA\r\n",
            [Step.EHLO, Step.MAIL, Step.RCPT, Step.BDAT, ("bad", Step.DATA)],
        ),
    ],
)
def test_bad_sequences_are_flagged(script: bytes, expected: list[object]) -> None:
    conn = greeted()
    assert steps(drain(conn, script))[:-1] == expected


def test_negative_replies_do_not_move_the_state() -> None:
    conn = greeted()
    drain(conn, b"EHLO c\r\n")
    conn.receive_data(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    conn.next_event()
    conn.reply(550, "no", "5.7.1")
    assert conn.state is State.GREETED
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and not event.allowed
    assert not conn.allows(Step.RCPT) and conn.allows(Step.MAIL)


def test_allows_helper() -> None:
    conn = greeted()
    assert conn.allows(Step.EHLO) and not conn.allows(Step.MAIL)
    assert not conn.allows(Step.DATA_END) and not conn.allows(Step.CONNECT)
    drain(conn, b"EHLO c\r\n")
    assert conn.allows(Step.MAIL) and conn.allows(Step.STARTTLS) and conn.allows(Step.AUTH)


def test_unrecognized_and_garbage_lines() -> None:
    conn = greeted()
    events = drain(conn, b"HELLO there\r\n\x00\xff\xfe\r\n\r\nNOOP\r\n")
    assert isinstance(events[0], UnrecognizedCommand) and events[0].verb == "HELLO"
    assert isinstance(events[1], UnrecognizedCommand)
    assert events[2] == UnrecognizedCommand("", "", b"")
    assert steps(events[3:]) == [Step.NOOP, "NeedData"]


def test_bare_lf_and_lower_case_are_accepted_for_commands() -> None:
    conn = greeted()
    events = drain(conn, b"ehlo c\nmail from:<a@x>\n")
    assert steps(events) == [Step.EHLO, Step.MAIL, "NeedData"]
    assert isinstance(events[1], CommandReceived) and events[1].verb == "MAIL"


def test_over_long_line_gives_one_event_and_is_skipped() -> None:
    conn = greeted()
    events = drain(conn, b"NOOP " + b"x" * 600)
    assert steps(events) == ["LineTooLong", "NeedData"]
    assert events[0] == LineTooLong(512)
    events = drain(conn, b"y" * 5000 + b"\r\nNOOP\r\n")
    assert steps(events) == [Step.NOOP, "NeedData"]
    # the whole over-long line and what follows in one read
    events = drain(conn, b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n")
    assert steps(events) == ["LineTooLong", Step.NOOP, "NeedData"]


def test_line_of_exactly_512_octets_is_fine() -> None:
    conn = greeted()
    line = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(line) == 512
    assert steps(drain(conn, line)) == [Step.NOOP, "NeedData"]
    assert steps(drain(conn, b"NOOP " + b"x" * (512 - 6) + b"\r\n")) == ["LineTooLong", "NeedData"]


def test_auth_lines_may_be_longer_and_sasl_exchange() -> None:
    conn = greeted()
    drain(conn, b"EHLO c\r\n")
    long_auth = b"AUTH PLAIN " + b"A" * 4000 + b"\r\n"
    conn.receive_data(long_auth)
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and event.step is Step.AUTH
    conn.reply(334, "")
    assert conn.state is State.AUTH
    conn.receive_data(b"dXNlcg==\r\n")
    event = conn.next_event()
    assert event == AuthResponse(b"dXNlcg==")
    assert conn.pending_step is Step.AUTH
    conn.reply(235, "ok", "2.7.0")
    assert conn.authenticated and conn.state is State.GREETED
    assert steps(drain(conn, b"A" * (MAX_AUTH_LINE + 1))) == ["LineTooLong", "NeedData"]


def test_starttls_drops_unread_input_and_starts_over() -> None:
    conn = greeted()
    drain(conn, b"EHLO c\r\n")
    conn.receive_data(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
    event = conn.next_event()
    assert isinstance(event, CommandReceived) and event.step is Step.STARTTLS
    conn.reply(220, "go ahead", "2.0.0")
    assert conn.tls and conn.state is State.CONNECTED
    assert isinstance(conn.next_event(), NeedData)
    assert not conn.allows(Step.MAIL)
    drain(conn, b"EHLO c\r\n")
    assert not conn.allows(Step.STARTTLS)


def test_peer_close_mid_data_and_after_commands() -> None:
    conn = open_data()
    conn.receive_data(b"partial")
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.state is State.CLOSED
    conn = greeted()
    conn.receive_data(b"NOOP\r\n")
    conn.receive_data(b"")
    assert steps(drain(conn)) == [Step.NOOP, "ConnectionClosed"]
    conn = greeted()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")


def test_data_after_quit_is_ignored() -> None:
    conn = greeted()
    events = drain(conn, b"QUIT\r\nNOOP\r\n")
    assert steps(events) == [Step.QUIT, "ConnectionClosed"]
    conn.receive_data(b"NOOP\r\n")
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_parse_bdat_argument() -> None:
    assert parse_bdat_argument("100") == (100, False)
    assert parse_bdat_argument("0 last") == (0, True)
    assert parse_bdat_argument("x") is None
    assert parse_bdat_argument("10 LAST extra") is None
    assert parse_bdat_argument("-1") is None


@pytest.mark.parametrize(
    ("argument", "keyword", "expected"),
    [
        ("FROM:<a@b.c>", "FROM", ("a@b.c", {})),
        (
            "from: <a@b.c> SIZE=100 BODY=8BITMIME",
            "FROM",
            ("a@b.c", {"SIZE": "100", "BODY": "8BITMIME"}),
        ),
        ("FROM:<>", "FROM", ("", {})),
        ("TO:<b@c> NOTIFY=NEVER SMTPUTF8", "TO", ("b@c", {"NOTIFY": "NEVER", "SMTPUTF8": None})),
        ("TO:b@c", "TO", ("b@c", {})),
        ("TO:<b@c", "TO", None),
        ("FROM:<a@b>", "TO", None),
        ("TO:<b@c>x", "TO", None),
        ("TO:", "TO", None),
        ("TO:<b@c> =bad", "TO", None),
    ],
)
def test_parse_path_argument(argument: str, keyword: str, expected: object) -> None:
    assert parse_path_argument(argument, keyword) == expected
