"""Following a conversation from its bytes: the same session however the bytes are cut,
content unstuffed, pipelined groups, BDAT, AUTH redacted, STARTTLS, LMTP, misbehaviour."""

from __future__ import annotations

import hashlib

from smtpbench.protocol.message import dot_stuff
from smtpbench.recording import Conversation, RecordedSession

Talk = list[tuple[str, bytes]]  # ("c" or "s", bytes), in the order they were sent

MESSAGE = b"Subject: hi\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n"
TALK: Talk = [
    ("s", b"220 mx.test ESMTP\r\n"),
    ("c", b"EHLO client.test\r\n"),
    ("s", b"250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n"),
    ("c", b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"),
    ("s", b"235 2.7.0 Authentication successful\r\n"),
    ("c", b"MAIL FROM:<a@b.test> SIZE=100\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\nDATA\r\n"),
    ("s", b"250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n"),
    ("c", dot_stuff(MESSAGE)),
    ("s", b"250 2.0.0 Ok: queued\r\n"),
    ("c", b"MAIL FROM:<>\r\nRCPT TO:<c@d.test>\r\nBDAT 5\r\nhello"),
    ("c", b"BDAT 7 LAST\r\n world\n"),
    ("s", b"250 Ok\r\n250 Ok\r\n250 5 octets\r\n250 queued\r\n"),
    ("c", b"AUTH LOGIN\r\n"),
    ("s", b"334 VXNlcm5hbWU6\r\n"),
    ("c", b"dXNlcg==\r\n"),
    ("s", b"334 UGFzc3dvcmQ6\r\n"),
    ("c", b"c2VjcmV0\r\n"),
    ("s", b"503 5.5.1 Already authenticated\r\n"),
    ("c", b"NOOP\n"),
    ("s", b"\x00\xffgarbage\r\n"),
    ("c", b"QUIT\r\n"),
    ("s", b"221 2.0.0 Bye\r\n"),
]


def follow(talk: Talk, *, split: int | None = None, **options: bool) -> RecordedSession:
    conversation = Conversation(0, 100.0, "127.0.0.1:5000", **options)
    t = 100.0
    for side, data in talk:
        pieces = (
            [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
        )
        for piece in pieces:
            t += 0.001
            if side == "c":
                conversation.client_data(t, piece)
            else:
                conversation.server_data(t, piece)
    conversation.server_closed(t + 0.001)
    return conversation.finish(t + 0.002, epoch=99.0)


def test_the_steps_of_a_conversation() -> None:
    session = follow(TALK)
    assert session.start == 1.0 and session.closed_by == "server"
    kinds = [(step.kind, step.line, step.pipelined) for step in session.steps]
    assert kinds == [
        ("banner", None, False),
        ("command", b"EHLO client.test", False),
        ("command", b"AUTH PLAIN", False),  # the initial response is redacted
        ("command", b"MAIL FROM:<a@b.test> SIZE=100", False),
        ("command", b"RCPT TO:<c@d.test>", True),
        ("command", b"RCPT TO:<e@f.test>", True),
        ("command", b"DATA", True),
        ("data", None, False),
        ("command", b"MAIL FROM:<>", False),
        ("command", b"RCPT TO:<c@d.test>", True),
        ("command", b"BDAT 5", True),
        ("command", b"BDAT 7 LAST", True),
        ("command", b"AUTH LOGIN", False),
        ("sasl", None, False),
        ("sasl", None, False),
        ("command", b"NOOP", False),
        ("command", b"QUIT", False),
    ]
    steps = session.steps
    assert steps[2].redacted and steps[13].redacted and not steps[1].redacted
    assert [r.code for r in steps[5].replies] == [250]
    assert steps[4].reply is not None and steps[4].reply.enhanced == "5.1.1"
    assert steps[1].reply is not None and steps[1].reply.lines == (
        "mx.test",
        "PIPELINING",
        "CHUNKING",
        "AUTH PLAIN LOGIN",
    )
    data = steps[7].content
    assert data is not None and data.data == MESSAGE and data.size == len(MESSAGE)
    assert data.sha256 == hashlib.sha256(MESSAGE).hexdigest()
    assert steps[10].content is not None and steps[10].content.data == b"hello"
    assert steps[11].content is not None and steps[11].content.data == b" world\n"
    assert steps[15].bare_lf and steps[15].reply is not None and steps[15].reply.code is None
    assert session.messages == 2


def test_any_cut_of_the_bytes_gives_the_same_session() -> None:
    whole = follow(TALK).without_timing()
    for split in (1, 2, 3, 5, 7, 64):
        assert follow(TALK, split=split).without_timing() == whole, split


def test_credentials_kept_when_asked() -> None:
    session = follow(TALK, redact_auth=False)
    assert session.steps[2].line == b"AUTH PLAIN AHVzZXIAc2VjcmV0"
    assert session.steps[13].line == b"dXNlcg==" and not session.steps[13].redacted


def test_without_content_the_size_and_hash_are_the_same() -> None:
    full = follow(TALK).steps[7].content
    hashed = follow(TALK, keep_content=False).steps[7].content
    assert full is not None and hashed is not None
    assert hashed.data is None and (hashed.size, hashed.sha256) == (full.size, full.sha256)


def test_a_long_message_line_and_a_dot_at_the_cut() -> None:
    body = b"x" * 200_000 + b"\r\n." + b"y" * 70_000 + b"\r\n"
    talk: Talk = [
        ("s", b"220 mx\r\n"),
        ("c", b"HELO a\r\n"),
        ("s", b"250 mx\r\n"),
        ("c", b"MAIL FROM:<a@b>\r\n"),
        ("s", b"250 ok\r\n"),
        ("c", b"RCPT TO:<c@d>\r\n"),
        ("s", b"250 ok\r\n"),
        ("c", b"DATA\r\n"),
        ("s", b"354 go\r\n"),
        ("c", dot_stuff(body)),
        ("s", b"250 ok\r\n"),
    ]
    for split in (None, 1000, 65536):
        content = follow(talk, split=split).steps[-1].content
        assert content is not None and content.data == body, split


def test_early_talker_starttls_and_lmtp() -> None:
    talk: Talk = [
        ("c", b"LHLO early.test\r\n"),
        ("s", b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n"),
        ("c", b"MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n"),
        ("s", b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        ("c", b"hi\r\n.\r\n"),
        ("s", b"250 x delivered\r\n"),
        ("s", b"452 z over quota\r\n"),
        ("c", b"STARTTLS\r\nNOOP\r\n"),
        ("s", b"220 go ahead\r\n"),
    ]
    conversation = Conversation(0, 0.0, "c")
    for side, data in talk:
        (conversation.client_data if side == "c" else conversation.server_data)(0.1, data)
    assert conversation.tls_due
    assert conversation.take_starttls_span() is not None
    conversation.tls_started(0.2)
    conversation.client_data(0.3, b"LHLO again\r\n")
    conversation.server_data(0.4, b"250 mx\r\n")
    steps = conversation.finish(0.5).steps
    assert steps[1].pipelined and steps[1].line == b"LHLO early.test"
    data = steps[6]
    assert data.kind == "data" and [r.code for r in data.replies] == [250, 452]
    assert [s.kind for s in steps[-3:]] == ["command", "tls", "command"]
    assert steps[-3].line == b"STARTTLS" and steps[-1].line == b"LHLO again"


def test_misbehaving_peers_stay_bounded() -> None:
    conversation = Conversation(0, 0.0, "c")
    conversation.server_data(0.0, b"220 mx\r\n")
    conversation.client_data(0.1, b"A" * 100_000 + b"\r\nNOOP\r\n")
    conversation.server_data(0.2, b"500 too long\r\n250 ok\r\n")
    conversation.server_data(0.3, b"221-" + b"z" * 100_000)
    session = conversation.finish(0.4)
    long_line = session.steps[1].line
    assert long_line is not None and len(long_line) == 65536
    assert session.steps[2].line == b"NOOP" and session.steps[2].reply is not None
    assert session.closed_by == "proxy"  # nobody closed: the recording ended it
