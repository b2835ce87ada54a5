"""The recording codec field by field: what each line of the file may hold, the defaults
of what it may leave out, and the exact field and words of each error (the reader adds
the file and the line; ``test_recording_format.py`` covers that)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from smtpbench.recording.codec import (
    FieldError,
    decode_content,
    decode_header,
    decode_reply,
    decode_session,
    decode_step,
    encode_bytes,
    encode_header,
    encode_reply,
    encode_session,
    encode_step,
)
from smtpbench.recording.model import (
    Content,
    RecordedReply,
    RecordedSession,
    RecordedStep,
    RecordingHeader,
)

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2


def header(**fields: Any) -> dict[str, Any]:
    base = {"format": "smtpbench-recording", "version": 1, "source": "proxy", "epoch": 1.5}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def error_of(decode: Any, *args: Any) -> tuple[str, str, str]:
    with pytest.raises(FieldError) as caught:
        decode(*args)
    return caught.value.path, caught.value.message, str(caught.value)


# -- the header -----------------------------------------------------------------------


def test_a_header_with_only_what_it_must_hold_takes_the_defaults() -> None:
    decoded = decode_header(header())
    assert decoded == RecordingHeader(
        source="proxy", epoch=1.5, started_at="", server="", content="full", auth="redacted"
    )
    assert decoded.smtpbench == "" and decoded.extra == {}


def test_a_header_keeps_every_field_and_what_it_does_not_know_as_extra() -> None:
    decoded = decode_header(
        header(
            started_at="2026-01-01T00:00:00",
            server="mx.test:25",
            content="hash",
            auth="kept",
            smtpbench="1.2",
            capture="eth0",
        )
    )
    assert decoded.started_at == "2026-01-01T00:00:00" and decoded.server == "mx.test:25"
    assert decoded.content == "hash" and decoded.auth == "kept" and decoded.smtpbench == "1.2"
    assert decoded.extra == {"capture": "eth0"}
    assert type(decode_header(header(epoch=7)).epoch) is float


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        ([], "", "expected an object, got []"),
        (
            header(format=...),
            "format",
            "expected 'smtpbench-recording': is this a recording? got None",
        ),
        (header(version=...), "version", "expected 1, got None"),
        (header(version=2), "version", "2 is newer than this smtpbench reads (1); upgrade"),
        (header(version=False), "version", "expected 1, got False"),
        (header(version="2"), "version", "expected 1, got '2'"),
        (header(version=0), "version", "expected 1, got 0"),
        (header(source=...), "source", "missing"),
        (header(source=3), "source", "expected a string, got 3"),
        (header(epoch=...), "epoch", "missing"),
        (header(epoch=-0.5), "epoch", "a time cannot be negative, got -0.5"),
        (header(content="all"), "content", "expected 'full' or 'hash', got 'all'"),
        (header(auth="none"), "auth", "expected 'redacted' or 'kept', got 'none'"),
        (header(started_at=1), "started_at", "expected a string, got 1"),
        (header(server=None), "server", "expected a string, got None"),
        (header(smtpbench=1.0), "smtpbench", "expected a string, got 1.0"),
    ],
)
def test_a_bad_header_names_its_field(obj: Any, path: str, message: str) -> None:
    got_path, got_message, text = error_of(decode_header, obj)
    assert (got_path, got_message) == (path, message)
    assert text == (f"{path}: {message}" if path else message)


def test_a_long_value_is_shown_cut_short() -> None:
    # repr of 50 letters is 52 characters: the first 37 are shown, then "...".
    _, message, _ = error_of(decode_header, header(content="x" * 50))
    assert message == "expected 'full' or 'hash', got '" + "x" * 36 + "..."
    # 40 characters are shown whole: repr of 38 letters; 41 are not.
    _, message, _ = error_of(decode_header, header(content="y" * 38))
    assert message == "expected 'full' or 'hash', got '" + "y" * 38 + "'"
    _, message, _ = error_of(decode_header, header(content="z" * 39))
    assert message == "expected 'full' or 'hash', got '" + "z" * 36 + "..."


def test_a_header_of_another_format_says_what_it_holds() -> None:
    _, message, _ = error_of(decode_header, header(format="pcap"))
    assert message == "expected 'smtpbench-recording': is this a recording? got 'pcap'"


def test_a_session_that_is_not_an_object_is_named_as_such() -> None:
    assert error_of(decode_session, [1]) == (
        "",
        "expected an object, got [1]",
        "expected an object, got [1]",
    )


# -- replies --------------------------------------------------------------------------


def test_a_reply_reads_whole() -> None:
    obj = {"at": 2, "code": 250, "enhanced": "2.1.5", "lines": ["one", "two"]}
    decoded = decode_reply(obj, "r")
    assert decoded == RecordedReply(250, ("one", "two"), 2.0, "2.1.5")
    garbage = decode_reply({"at": 0, "code": None, "lines": ["what"]}, "r")
    assert garbage.code is None and garbage.enhanced is None
    # The lowest and highest reply codes SMTP has (RFC 5321 section 4.2).
    assert decode_reply({"at": 0, "code": 200, "lines": ["x"]}, "r").code == 200
    assert decode_reply({"at": 0, "code": 599, "lines": ["x"]}, "r").code == 599


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        ("250 ok", "r", "expected an object, got '250 ok'"),
        ({"at": 0, "lines": ["x"]}, "r.code", "missing"),
        ({"at": 0, "code": 199, "lines": ["x"]}, "r.code", "expected a reply code"),
        ({"at": 0, "code": 600, "lines": ["x"]}, "r.code", "expected a reply code"),
        ({"at": 0, "code": True, "lines": ["x"]}, "r.code", "expected a reply code"),
        ({"at": 0, "code": 250.0, "lines": ["x"]}, "r.code", "expected a reply code"),
        ({"at": 0, "code": 250}, "r.lines", "missing"),
        ({"at": 0, "code": 250, "lines": "x"}, "r.lines", "expected a list, got 'x'"),
        ({"at": 0, "code": 250, "lines": []}, "r.lines", "a reply has at least one line"),
        ({"at": 0, "code": 250, "lines": ["a", 5]}, "r.lines[1]", "expected a string, got 5"),
        ({"code": 250, "lines": ["x"]}, "r.at", "missing"),
        ({"at": "1", "code": 250, "lines": ["x"]}, "r.at", "expected a number of seconds"),
        (
            {"at": 0, "code": 250, "lines": ["x"], "enhanced": "3.1.0"},
            "r.enhanced",
            "expected a code such as 2.1.5, got '3.1.0'",
        ),
        (
            {"at": 0, "code": 250, "lines": ["x"], "enhanced": 215},
            "r.enhanced",
            "expected a code such as 2.1.5, got 215",
        ),
    ],
)
def test_a_bad_reply_names_its_field(obj: Any, path: str, message: str) -> None:
    got_path, got_message, text = error_of(decode_reply, obj, "r")
    assert got_path == path and got_message.startswith(message)
    assert text == f"{path}: {got_message}"


def test_the_code_error_says_what_a_reply_code_is() -> None:
    _, message, _ = error_of(decode_reply, {"at": 0, "code": 99, "lines": ["x"]}, "r")
    assert message == "expected a reply code (200-599) or null, got 99"


# -- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a number of seconds, got True"),
        ("1", "expected a number of seconds, got '1'"),
        (float("inf"), "expected a number of seconds, got inf"),
        (float("nan"), "expected a number of seconds, got nan"),
        (-1, "a time cannot be negative, got -1"),
    ],
)
def test_a_time_is_a_finite_number_of_seconds(value: Any, message: str) -> None:
    assert error_of(decode_session, {**SESSION, "start": value})[:2] == ("start", message)


def test_a_time_of_zero_is_a_time() -> None:
    assert decode_session({**SESSION, "start": 0}).start == 0.0


@pytest.mark.parametrize("value", [True, 1.0, -1, "1", None])
def test_a_session_number_is_a_whole_number(value: Any) -> None:
    path, message, _ = error_of(decode_session, {**SESSION, "session": value})
    assert path == "session"
    assert message == f"expected a whole number, 0 or more, got {value!r}"


# -- sessions -------------------------------------------------------------------------

SESSION: dict[str, Any] = {"session": 0, "start": 0.25, "client": "c:1", "steps": []}


def test_a_session_with_only_what_it_must_hold_takes_the_defaults() -> None:
    decoded = decode_session({"session": 3, "start": 1, "steps": []})
    assert decoded == RecordedSession(3, 1.0, "", (), duration=0.0, closed_by="client")
    full = decode_session({**SESSION, "duration": 2, "closed_by": "server"})
    assert (full.client, full.duration, full.closed_by) == ("c:1", 2.0, "server")
    assert type(full.duration) is float


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"session": ...}, "session", "missing"),
        ({"start": ...}, "start", "missing"),
        ({"steps": ...}, "steps", "missing"),
        ({"steps": {}}, "steps", "expected a list, got {}"),
        ({"client": 1}, "client", "expected a string, got 1"),
        ({"closed_by": 1}, "closed_by", "expected a string, got 1"),
        ({"duration": -2}, "duration", "a time cannot be negative, got -2"),
        ({"steps": [{"kind": "banner"}, 1]}, "steps[1]", "expected an object, got 1"),
    ],
)
def test_a_bad_session_names_its_field(change: dict[str, Any], path: str, message: str) -> None:
    obj = {key: value for key, value in {**SESSION, **change}.items() if value is not ...}
    assert error_of(decode_session, obj)[:2] == (path, message)


# -- steps ----------------------------------------------------------------------------


def test_a_step_with_only_what_it_must_hold_takes_the_defaults() -> None:
    step = decode_step({"kind": "banner"}, "s")
    assert step == RecordedStep("banner", 0.0, None)
    assert (step.bare_lf, step.pipelined, step.redacted, step.replies) == (
        False,
        False,
        False,
        (),
    )
    assert step.content is None


def test_a_step_reads_whole() -> None:
    obj = {
        "kind": "command",
        "at": 1,
        "line": "MAIL FROM:<a@b.test>",
        "bare_lf": True,
        "pipelined": True,
        "replies": [
            {"at": 1.5, "code": 250, "lines": ["ok"]},
            {"at": 2, "code": 251, "lines": ["x"]},
        ],
    }
    step = decode_step(obj, "s")
    assert step.line == b"MAIL FROM:<a@b.test>" and step.at == 1.0
    assert step.bare_lf is True and step.pipelined is True and step.redacted is False
    assert [reply.code for reply in step.replies] == [250, 251]
    # A line that is not UTF-8 is kept in base64: "X", 0xff, "Y".
    binary = decode_step({"kind": "command", "line_base64": "WP9Z"}, "s")
    assert binary.line == b"X\xffY"
    # A CR inside a line is a byte like any other; only a line end is refused.
    assert decode_step({"kind": "command", "line": "A\rB"}, "s").line == b"A\rB"
    redacted = decode_step({"kind": "sasl", "redacted": True}, "s")
    assert redacted.line is None and redacted.redacted is True


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        (None, "s", "expected an object, got None"),
        ({}, "s.kind", "missing"),
        (
            {"kind": "helo"},
            "s.kind",
            "expected one of banner, command, data, sasl, tls, unasked, got 'helo'",
        ),
        ({"kind": "command"}, "s.line", "missing: a command has its line"),
        ({"kind": "command", "line": "A\nB"}, "s.line", "a line holds no line end"),
        ({"kind": "command", "line": "QUIT\r"}, "s.line", "a line holds no line end"),
        ({"kind": "command", "line": 5}, "s.line", "expected a string, got 5"),
        (
            {"kind": "command", "line": "A", "line_base64": "QQ=="},
            "s.line",
            "give line or line_base64, not both",
        ),
        ({"kind": "command", "line_base64": "!!"}, "s.line_base64", "not valid base64"),
        ({"kind": "command", "line_base64": 5}, "s.line_base64", "not valid base64"),
        (
            {"kind": "sasl"},
            "s.line",
            "missing: a SASL response has its line unless redacted",
        ),
        ({"kind": "banner", "line": "x"}, "s.line", "a banner step has no line"),
        ({"kind": "tls", "line": "x"}, "s.line", "a tls step has no line"),
        ({"kind": "unasked", "line": "x"}, "s.line", "a unasked step has no line"),
        ({"kind": "data", "line": "x"}, "s.line", "a data step has no line"),
        ({"kind": "data"}, "s.content", "missing: a data step has its content"),
        ({"kind": "banner", "redacted": 1}, "s.redacted", "expected true or false, got 1"),
        ({"kind": "banner", "bare_lf": "no"}, "s.bare_lf", "expected true or false, got 'no'"),
        ({"kind": "banner", "pipelined": 0}, "s.pipelined", "expected true or false, got 0"),
        ({"kind": "banner", "at": -1}, "s.at", "a time cannot be negative, got -1"),
        ({"kind": "banner", "replies": 1}, "s.replies", "expected a list, got 1"),
        (
            {"kind": "banner", "replies": [{"at": 0, "code": 250, "lines": ["x"]}, {}]},
            "s.replies[1].code",
            "missing",
        ),
    ],
)
def test_a_bad_step_names_its_field(obj: Any, path: str, message: str) -> None:
    assert error_of(decode_step, obj, "s")[:2] == (path, message)


# -- content --------------------------------------------------------------------------


def test_content_with_its_bytes_or_with_size_and_hash_only() -> None:
    assert decode_content({"size": 3, "sha256": ABC_SHA256, "text": "abc"}, "c") == Content(
        3, ABC_SHA256, b"abc"
    )
    assert decode_content({"size": 3, "sha256": ABC_SHA256, "base64": "YWJj"}, "c").data == b"abc"
    assert decode_content({"size": 3, "sha256": ABC_SHA256}, "c") == Content(3, ABC_SHA256, None)
    step = decode_step({"kind": "data", "content": {"size": 3, "sha256": ABC_SHA256}}, "s")
    assert step.content == Content(3, ABC_SHA256, None)


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        ("abc", "c", "expected an object, got 'abc'"),
        ({"sha256": ABC_SHA256}, "c.size", "missing"),
        (
            {"size": -3, "sha256": ABC_SHA256},
            "c.size",
            "expected a whole number, 0 or more, got -3",
        ),
        ({"size": 3}, "c.sha256", "missing"),
        ({"size": 3, "sha256": 3}, "c.sha256", "expected a string, got 3"),
        (
            {"size": 3, "sha256": ABC_SHA256.upper()},
            "c.sha256",
            "expected 64 lower-case hexadecimal digits",
        ),
        (
            {"size": 3, "sha256": ABC_SHA256 + "0"},
            "c.sha256",
            "expected 64 lower-case hexadecimal digits",
        ),
        (
            {"size": 4, "sha256": ABC_SHA256, "text": "abc"},
            "c.size",
            "says 4 but the content has 3 bytes",
        ),
        (
            {"size": 3, "sha256": "0" * 64, "text": "abc"},
            "c.sha256",
            "does not match the content",
        ),
        (
            {"size": 3, "sha256": ABC_SHA256, "text": "abc", "base64": "YWJj"},
            "c.text",
            "give text or base64, not both",
        ),
        ({"size": 3, "sha256": ABC_SHA256, "base64": "YWJj!"}, "c.base64", "not valid base64"),
    ],
)
def test_bad_content_names_its_field(obj: Any, path: str, message: str) -> None:
    assert error_of(decode_content, obj, "c")[:2] == (path, message)


# -- encoding -------------------------------------------------------------------------


def test_bytes_are_text_when_they_are_utf8_and_base64_when_not() -> None:
    assert encode_bytes("é".encode(), "line", "line_base64") == {"line": "é"}
    assert encode_bytes(b"X\xffY", "line", "line_base64") == {"line_base64": "WP9Z"}


def test_the_header_written() -> None:
    written = encode_header(
        RecordingHeader(
            source="pcap",
            epoch=12.3456789,
            started_at="t",
            server="s",
            content="hash",
            auth="kept",
            smtpbench="9",
            extra={"capture": "lo"},
        )
    )
    assert written == {
        "format": "smtpbench-recording",
        "version": 1,
        "source": "pcap",
        "epoch": 12.345679,  # to the microsecond
        "started_at": "t",
        "server": "s",
        "content": "hash",
        "auth": "kept",
        "smtpbench": "9",
        "capture": "lo",
    }


def test_steps_and_sessions_written_keep_only_what_is_set() -> None:
    banner = RecordedStep("banner", 0.0000004, replies=(RecordedReply(220, ("hi",), 0.1234567),))
    assert encode_step(banner) == {
        "kind": "banner",
        "at": 0.0,
        "replies": [{"at": 0.123457, "code": 220, "lines": ["hi"]}],
    }
    assert encode_step(RecordedStep("tls", 1.0)) == {"kind": "tls", "at": 1.0}
    command = RecordedStep(
        "command", 2.0, b"AUTH PLAIN", bare_lf=True, pipelined=True, redacted=True
    )
    assert encode_step(command) == {
        "kind": "command",
        "at": 2.0,
        "line": "AUTH PLAIN",
        "bare_lf": True,
        "pipelined": True,
        "redacted": True,
        "replies": [],
    }
    data = RecordedStep("data", 3.0, content=Content(3, ABC_SHA256, None))
    assert encode_step(data)["content"] == {"size": 3, "sha256": ABC_SHA256}
    assert encode_reply(RecordedReply(250, ("ok",), 0.5, "2.0.0")) == {
        "at": 0.5,
        "code": 250,
        "enhanced": "2.0.0",
        "lines": ["ok"],
    }
    session = RecordedSession(4, 1.00000049, "c:1", (), duration=0.1, closed_by="server")
    assert encode_session(session) == {
        "session": 4,
        "start": 1.0,
        "client": "c:1",
        "duration": 0.1,
        "closed_by": "server",
        "steps": [],
    }


def test_what_is_encoded_decodes_to_the_same() -> None:
    data = b"Subject: x\r\n\r\nhello\r\n"
    content = Content(len(data), hashlib.sha256(data).hexdigest(), data)
    steps = (
        RecordedStep("banner", 0.0, replies=(RecordedReply(220, ("mx",), 0.001),)),
        RecordedStep("command", 0.002, b"DATA", replies=(RecordedReply(354, ("go",), 0.003),)),
        RecordedStep("data", 0.004, content=content, replies=(RecordedReply(250, ("ok",), 0.005),)),
        RecordedStep("sasl", 0.006, None, redacted=True),
    )
    session = RecordedSession(1, 0.5, "c:2", steps, duration=0.01, closed_by="server")
    assert decode_session(encode_session(session)) == session
