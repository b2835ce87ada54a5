"""The reply parser and EHLO capabilities, fed bytes directly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpbench.protocol.capabilities import parse_ehlo
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.errors import RemoteProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser

EHLO_REPLY = (
    b"250-mx.example.net Hello\r\n"
    b"250-SIZE 35882577\r\n"
    b"250-PIPELINING\r\n"
    b"250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n"
    b"250-CHUNKING\r\n"
    b"250-DSN\r\n"
    b"250-STARTTLS\r\n"
    b"250-AUTH PLAIN LOGIN CRAM-MD5\r\n"
    b"250-AUTH=LOGIN\r\n"
    b"250 ENHANCEDSTATUSCODES\r\n"
)


def parse_all(data: bytes) -> list[Reply]:
    parser = ReplyParser()
    parser.feed(data)
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


def test_single_line_reply_with_enhanced_code() -> None:
    [reply] = parse_all(b"250 2.1.5 Recipient OK\r\n")
    assert reply.code == 250
    assert reply.enhanced == "2.1.5"
    assert reply.text == "Recipient OK"
    assert str(reply) == "250 2.1.5 Recipient OK"


def test_enhanced_code_must_match_the_reply_class() -> None:
    [reply] = parse_all(b"550 2.1.5 odd server\r\n")
    assert reply.enhanced is None
    assert reply.text == "2.1.5 odd server"


def test_multi_line_reply_and_bare_code_and_bare_lf() -> None:
    replies = parse_all(b"220-first\r\n220 second\r\n354\r\n221 bye\n")
    assert [r.code for r in replies] == [220, 354, 221]
    assert replies[0].lines == ("first", "second")
    assert replies[1].lines == ("",)
    assert replies[2].text == "bye"


def test_ehlo_capabilities() -> None:
    [reply] = parse_all(EHLO_REPLY)
    caps = parse_ehlo(reply)
    assert caps.greeting == "mx.example.net Hello"
    assert caps.size == 35882577
    assert caps.pipelining and caps.eightbitmime and caps.smtputf8 and caps.chunking
    assert caps.dsn and caps.starttls and caps.enhanced_status_codes
    assert caps.auth == frozenset({"PLAIN", "LOGIN", "CRAM-MD5"})
    assert not caps.has("ETRN")


def test_size_without_a_number_means_no_limit() -> None:
    [reply] = parse_all(b"250-x\r\n250 SIZE\r\n")
    assert parse_ehlo(reply).size == 0
    [reply] = parse_all(b"250 x\r\n")
    assert parse_ehlo(reply).size is None


@given(st.lists(st.integers(min_value=1, max_value=len(EHLO_REPLY) - 1), max_size=20))
def test_replies_split_across_reads_parse_the_same(cuts: list[int]) -> None:
    data = EHLO_REPLY + b"250 2.0.0 Ok\r\n"
    bounds = [0, *sorted(set(cuts)), len(data)]
    parser = ReplyParser()
    replies = []
    for start, end in itertools.pairwise(bounds):
        parser.feed(data[start:end])
        while (reply := parser.next_reply()) is not None:
            replies.append(reply)
    assert replies == parse_all(data)
    assert len(replies) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello there\r\n", "malformed reply line"),
        (b"25\r\n", "malformed reply line"),
        (b"250x\r\n", "malformed reply line"),
        (b"199 too low\r\n", "out of range"),
        (b"600 too high\r\n", "out of range"),
        (b"270 bad second digit\r\n", "out of range"),
        (b"250-one\r\n550 two\r\n", "changed code"),
        (b"250 nul\x00inside\r\n", "malformed"),
    ],
)
def test_malformed_output_is_a_remote_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse_all(data)


def test_an_endless_line_is_refused_without_waiting_for_its_end() -> None:
    parser = ReplyParser(max_line_length=100)
    parser.feed(b"250 " + b"x" * 200)
    with pytest.raises(RemoteProtocolError, match="longer than 100"):
        parser.next_reply()


def test_an_endless_multiline_reply_is_refused() -> None:
    parser = ReplyParser(max_lines=10)
    parser.feed(b"250-x\r\n" * 11)
    with pytest.raises(RemoteProtocolError, match="longer than 10 lines"):
        parser.next_reply()


def test_reply_meanings_follow_rfc_5321() -> None:
    assert reply_meaning(250) == "Requested mail action okay, completed"
    assert reply_meaning(354).startswith("Start mail input")
    assert reply_meaning(459) == "Transient failure"
    assert reply_meaning(150) == "Not a valid SMTP reply code"


# -- the reply code (RFC 5321 4.2): three digits, the first 2 to 5, the second 0 to 5 --------


@pytest.mark.parametrize(
    "data",
    [
        b"25x not a digit\r\n",  # the third digit is a digit too
        b"25: colon after the digits\r\n",
        b"25/ slash after the digits\r\n",
        b"2x0 second\r\n",
        b"2:0 second\r\n",
        b"x50 first\r\n",
        b":50 first\r\n",
    ],
)
def test_every_character_of_the_code_must_be_a_digit(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed reply line"):
        parse_all(data)


@pytest.mark.parametrize(
    "data",
    [b"050 zero\r\n", b"150 one\r\n", b"650 six\r\n", b"950 nine\r\n", b"260 second six\r\n"],
)
def test_a_three_digit_code_outside_2xx_to_5xx_is_out_of_range(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="reply code out of range"):
        parse_all(data)


@pytest.mark.parametrize("code", [200, 259, 354, 400, 459, 500, 550, 554, 559])
def test_every_code_in_range_is_read_as_written(code: int) -> None:
    [reply] = parse_all(f"{code} text\r\n".encode())
    assert reply.code == code


def test_a_server_text_in_latin_1_is_read_not_refused() -> None:
    [reply] = parse_all(b"250 caf\xe9 ok\r\n")
    assert reply.code == 250
    assert reply.text == "caf\ufffd ok"  # the byte that is not UTF-8 replaced, the rest kept


def test_str_of_a_reply_without_enhanced_code() -> None:
    [reply] = parse_all(b"250 ok\r\n")
    assert reply.enhanced is None
    assert str(reply) == "250 ok"


# -- enhanced status codes (RFC 3463): class.subject.detail, class 2, 4 or 5 -----------


@pytest.mark.parametrize(
    ("data", "enhanced", "text"),
    [
        (b"250 2.0.0\r\n", "2.0.0", ""),  # the code alone, nothing after it
        (b"200 2.0.0 ok\r\n", "2.0.0", "ok"),
        (b"400 4.3.0 try later\r\n", "4.3.0", "try later"),
        (b"500 5.5.1 syntax\r\n", "5.5.1", "syntax"),
        (b"550 5.123.456 longest parts\r\n", "5.123.456", "longest parts"),
        (b"554 5.7.1\tafter a tab\r\n", "5.7.1", "after a tab"),
    ],
)
def test_enhanced_code_is_taken_from_the_text(data: bytes, enhanced: str, text: str) -> None:
    [reply] = parse_all(data)
    assert reply.enhanced == enhanced
    assert reply.text == text


@pytest.mark.parametrize(
    "data",
    [
        b"550 5.1.1x unknown\r\n",  # no space after it
        b"250 2.1.5000 too long a detail\r\n",
        b"250 2.1000.5 too long a subject\r\n",
        b"354 3.0.0 class 3 does not exist\r\n",
        b"250 2.1 two parts\r\n",
        b"250 2x1.5 no dot\r\n",
        b"450 5.1.1 class of another reply\r\n",
    ],
)
def test_text_that_is_not_an_enhanced_code_is_left_as_text(data: bytes) -> None:
    [reply] = parse_all(data)
    assert reply.enhanced is None
    assert reply.text == data[4:-2].decode()


# -- bounds: a line of max_line_length bytes before its LF, a reply of max_lines lines ---


def test_a_line_of_exactly_the_maximum_length_is_accepted() -> None:
    parser = ReplyParser(max_line_length=100)
    line = b"250 " + b"x" * 95 + b"\r"  # 100 bytes before the LF, CR included
    parser.feed(line[:100])  # no LF yet: 100 bytes may still become a line
    assert parser.next_reply() is None
    parser.feed(b"\n")
    reply = parser.next_reply()
    assert reply is not None and reply.text == "x" * 95


def test_a_line_one_byte_over_the_maximum_is_refused() -> None:
    parser = ReplyParser(max_line_length=100)
    parser.feed(b"250 " + b"x" * 96 + b"\r\n")  # 101 bytes before the LF
    with pytest.raises(RemoteProtocolError, match="reply line longer than 100 bytes"):
        parser.next_reply()
    waiting = ReplyParser(max_line_length=100)
    waiting.feed(b"250 " + b"x" * 97)  # 101 bytes and no LF: refused without waiting
    with pytest.raises(RemoteProtocolError, match="reply line longer than 100 bytes"):
        waiting.next_reply()


def test_a_reply_of_exactly_max_lines_is_accepted_one_more_is_not() -> None:
    parser = ReplyParser(max_lines=10)
    parser.feed(b"250-x\r\n" * 9 + b"250 end\r\n")
    reply = parser.next_reply()
    assert reply is not None and len(reply.lines) == 10
    parser.feed(b"250-x\r\n" * 10 + b"250 end\r\n")
    with pytest.raises(RemoteProtocolError, match="reply longer than 10 lines"):
        parser.next_reply()


@pytest.mark.parametrize("data", [b"\n", b"\r\n", b"250 first\r\n\n"])
def test_an_empty_line_is_malformed_at_once(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(RemoteProtocolError, match="malformed reply line b''"):
        while parser.next_reply() is not None:
            pass


def test_errors_quote_the_line_cut_at_60_bytes() -> None:
    short = b"y" * 60  # exactly 60: quoted whole, no ellipsis
    with pytest.raises(RemoteProtocolError) as error:
        parse_all(short + b"\r\n")
    assert str(error.value) == f"malformed reply line {short!r}"
    long = b"z" * 61
    with pytest.raises(RemoteProtocolError) as error:
        parse_all(long + b"\r\n")
    assert str(error.value) == f"malformed reply line {b'z' * 60!r}..."


def test_buffered_says_whether_bytes_wait_to_be_taken() -> None:
    parser = ReplyParser()
    assert not parser.buffered
    parser.feed(b"250 ok\r\n25")
    assert parser.buffered
    assert parser.next_reply() is not None
    assert parser.buffered  # the start of the next reply
    parser.feed(b"0 two\r\n")
    assert parser.next_reply() is not None
    assert not parser.buffered


# -- one-line replies are parsed once per distinct line and reused ------------------------


def test_a_new_parser_has_no_reply_and_nothing_buffered() -> None:
    parser = ReplyParser()
    assert parser.next_reply() is None and not parser.buffered


def test_a_line_seen_alone_is_read_afresh_inside_a_multi_line_reply() -> None:
    assert [r.lines for r in parse_all(b"250 same line\r\n")] == [("same line",)]
    [reply] = parse_all(b"250-first\r\n250 same line\r\n")
    assert reply.lines == ("first", "same line")
    again = ReplyParser()
    again.feed(b"250-first\r\n")
    assert again.next_reply() is None
    again.feed(b"250 same line\r\n")
    reply = again.next_reply()
    assert reply is not None and reply.lines == ("first", "same line")


def test_the_last_line_of_a_multi_line_reply_read_alone_later_is_one_line() -> None:
    [long] = parse_all(b"250-one\r\n250-two\r\n250 last of several\r\n")
    assert long.lines == ("one", "two", "last of several")
    [short] = parse_all(b"250 last of several\r\n")
    assert short.lines == ("last of several",)
    [pair] = parse_all(b"250-one\r\n250 last of two\r\n")
    [alone] = parse_all(b"250 last of two\r\n")
    assert pair.lines == ("one", "last of two") and alone.lines == ("last of two",)


@pytest.mark.parametrize(
    ("data", "text"), [(b"221 bye\n", "bye"), (b"221 bye\r\n", "bye"), (b"221 b\r\r\n", "b\r")]
)
def test_line_ends_crlf_or_bare_lf_are_cut_once(data: bytes, text: str) -> None:
    for _ in range(2):  # the second read of the same line too
        [reply] = parse_all(data)
        assert reply.lines == (text,)


def test_a_reply_parsed_before_is_the_same_whether_it_comes_whole_or_in_pieces() -> None:
    # Replies are remembered by their bytes; a remembered multi-line reply must not
    # change what a read holding only part of it, or more than it, parses to.
    ehlo = b"250-mx.remembered.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    expected = Reply(250, ("mx.remembered.test", "PIPELINING", "SIZE 1000"))
    for _ in range(2):  # parsed, then remembered
        parser = ReplyParser()
        parser.feed(ehlo)
        assert parser.next_reply() == expected
        assert parser.next_reply() is None
        assert not parser.buffered
    for cut in range(1, len(ehlo)):
        parser = ReplyParser()
        parser.feed(ehlo[:cut])
        first = parser.next_reply()
        parser.feed(ehlo[cut:])
        assert (first or parser.next_reply()) == expected, cut
        assert parser.next_reply() is None
    parser = ReplyParser()
    parser.feed(ehlo + b"250 2.1.0 Ok\r\n")
    assert parser.next_reply() == expected
    assert parser.next_reply() == Reply(250, ("2.1.0 Ok",), "2.1.0")
    assert parser.next_reply() is None
    parser = ReplyParser()
    assert parser.next_reply() is None  # nothing read: nothing, even after all the above
