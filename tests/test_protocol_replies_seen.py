"""Replies the parser remembers: a reply read before is the very same object when its
bytes come again (a one-line reply by its line, a multi-line reply when it was the whole
of one read and short enough), never anything else; the table is forgotten when full."""

from __future__ import annotations

import pytest

from smtpbench.protocol import replies
from smtpbench.protocol.errors import RemoteProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser


def read(data: bytes | bytearray | memoryview) -> Reply | None:
    parser = ReplyParser()
    parser.feed(data)
    return parser.next_reply()


def test_a_one_line_reply_is_parsed_once() -> None:
    first = read(b"250 2.1.0 remembered once\r\n")
    assert first == Reply(250, ("2.1.0 remembered once",), "2.1.0")
    assert read(b"250 2.1.0 remembered once\r\n") is first
    # Also when it is not the whole read.
    parser = ReplyParser()
    parser.feed(b"250 2.1.0 remembered once\r\n221 bye\r\n")
    assert parser.next_reply() is first


def test_a_multi_line_reply_read_whole_is_parsed_once() -> None:
    ehlo = b"250-mx.seen.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    first = read(ehlo)
    assert first == Reply(250, ("mx.seen.test", "PIPELINING", "SIZE 1000"))
    assert read(ehlo) is first


def test_a_multi_line_reply_that_came_in_pieces_is_not_remembered() -> None:
    ehlo = b"250-mx.pieces.test\r\n250 SIZE 2000\r\n"
    parts = []
    for _ in range(2):
        parser = ReplyParser()
        parser.feed(ehlo[:25])
        assert parser.next_reply() is None
        parser.feed(ehlo[25:])
        parts.append(parser.next_reply())
    assert parts[0] == parts[1] == Reply(250, ("mx.pieces.test", "SIZE 2000"))
    assert parts[0] is not parts[1]
    # Nor under any other bytes: what was not read parses as what it is.
    assert read(b"XXXX") is None


def test_a_multi_line_reply_is_remembered_up_to_its_size_limit() -> None:
    def ehlo(size: int, tag: bytes) -> bytes:
        head = b"250-" + tag + b"\r\n250 "
        return head + b"x" * (size - len(head) - 2) + b"\r\n"

    limit = replies._SEEN_KEY_LIMIT
    at_limit = ehlo(limit, b"at.limit")
    assert len(at_limit) == limit and read(at_limit) is read(at_limit)
    over = ehlo(limit + 1, b"over.limit")
    assert len(over) == limit + 1
    first, second = read(over), read(over)
    assert first == second and first is not second


def test_a_read_handed_over_as_a_bytearray_or_a_view_parses_the_same() -> None:
    data = bytearray(b"250 2.0.0 from a bytearray\r\n")
    reply = read(data)
    data[0:3] = b"554"  # the caller's buffer is used again: the parser kept its copy
    assert reply == Reply(250, ("2.0.0 from a bytearray",), "2.0.0")
    assert read(memoryview(b"221 2.0.0 from a view\r\n")) == Reply(
        221, ("2.0.0 from a view",), "2.0.0"
    )


def test_the_table_is_forgotten_whole_when_full() -> None:
    replies._SEEN.clear()
    for number in range(replies._SEEN_LIMIT):
        read(b"250 unique %d\r\n" % number)
    assert len(replies._SEEN) == replies._SEEN_LIMIT
    read(b"250 one more\r\n")
    assert len(replies._SEEN) == 1


def test_take_is_feed_then_next_reply() -> None:
    """``take`` looks a whole read up in the table only when nothing came before it:
    not over a reply still buffered, nor in the middle of a multi-line reply."""
    assert read(b"250 2.1.5 seen before\r\n") is not None  # now in the table
    parser = ReplyParser()
    assert parser.take(b"250 first\r\n250 second\r\n") == Reply(250, ("first",))
    # "second" is still buffered: it comes before the read just taken.
    assert parser.take(b"250 2.1.5 seen before\r\n") == Reply(250, ("second",))
    assert parser.next_reply() == Reply(250, ("2.1.5 seen before",), "2.1.5")
    assert parser.next_reply() is None
    # A multi-line reply under way takes the next line as its own.
    assert parser.take(b"250-mx.take.test\r\n") is None
    assert parser.take(b"250 2.1.5 seen before\r\n") == Reply(
        250, ("mx.take.test", "2.1.5 seen before")
    )
    # A partial line, then its end.
    assert parser.take(b"250 2.1.5 seen") is None
    assert parser.take(b" before\r\n") is read(b"250 2.1.5 seen before\r\n")
    # A reply never seen is parsed; a bytearray or a view is taken as bytes are.
    assert parser.take(b"251 2.1.5 never seen before this read\r\n") == Reply(
        251, ("2.1.5 never seen before this read",), "2.1.5"
    )
    assert parser.take(bytearray(b"250 2.1.5 seen before\r\n")) is read(
        b"250 2.1.5 seen before\r\n"
    )
    assert parser.take(memoryview(b"252 from a view\r\n")) == Reply(252, ("from a view",))


GROUP = b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"


def take_all(parser: ReplyParser, data: bytes) -> list[Reply]:
    got = []
    reply = parser.take(data)
    while reply is not None:
        got.append(reply)
        assert parser.buffered or parser.next_reply() is None
        reply = parser.next_reply()
    assert not parser.buffered
    return got


def test_a_read_of_several_whole_replies_is_parsed_once() -> None:
    # A pipelined group's replies, in one read: the same for every message of a run.
    replies._SEEN_READS.clear()
    first = take_all(ReplyParser(), GROUP)
    assert [r.code for r in first] == [250, 250, 250, 354]
    assert replies._SEEN_READS[GROUP] == tuple(first)
    again = take_all(ReplyParser(), GROUP)
    assert again == first and all(a is b for a, b in zip(again, first, strict=True))


def test_a_read_remembered_is_taken_in_order_before_what_comes_next() -> None:
    take_all(ReplyParser(), GROUP)
    parser = ReplyParser()
    assert parser.take(GROUP).code == 250  # type: ignore[union-attr]
    assert parser.buffered
    # More bytes before the rest was taken: the remembered replies still come first.
    assert parser.take(b"221 2.0.0 Bye\r\n").code == 250  # type: ignore[union-attr]
    codes = []
    while (reply := parser.next_reply()) is not None:
        codes.append(reply.code)
    assert codes == [250, 354, 221] and not parser.buffered


def test_a_read_that_ends_inside_a_reply_or_is_added_to_is_not_remembered() -> None:
    replies._SEEN_READS.clear()
    parser = ReplyParser()
    assert parser.take(b"250 2.1.0 one\r\n250 2.1.5 tw") is not None
    assert parser.next_reply() is None
    assert parser.take(b"o\r\n") == Reply(250, ("2.1.5 two",), "2.1.5")
    # Two whole replies, but more bytes came before the second was taken.
    parser = ReplyParser()
    assert parser.take(b"250 2.1.0 three\r\n250 2.1.5 four\r\n") is not None
    parser.feed(b"221 bye\r\n")
    assert [parser.next_reply(), parser.next_reply()] == [
        Reply(250, ("2.1.5 four",), "2.1.5"),
        Reply(221, ("bye",)),
    ]
    assert replies._SEEN_READS == {}


def test_a_read_with_garbage_after_good_replies_fails_where_the_garbage_is_each_time() -> None:
    bad = b"250 2.1.0 fine\r\nXYZ garbage\r\n"
    for _ in range(2):
        parser = ReplyParser()
        assert parser.take(bad) == Reply(250, ("2.1.0 fine",), "2.1.0")
        with pytest.raises(RemoteProtocolError):
            parser.next_reply()
    assert bad not in replies._SEEN_READS


def test_the_table_of_reads_is_forgotten_whole_when_full() -> None:
    replies._SEEN_READS.clear()
    for number in range(replies._SEEN_LIMIT):
        take_all(ReplyParser(), b"250 a %d\r\n250 b\r\n" % number)
    assert len(replies._SEEN_READS) == replies._SEEN_LIMIT
    take_all(ReplyParser(), b"250 one more\r\n250 b\r\n")
    assert len(replies._SEEN_READS) == 1
