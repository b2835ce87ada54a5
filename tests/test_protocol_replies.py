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
