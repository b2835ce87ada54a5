"""The recording file: values written read back the same; every bad line is an error
naming the file and the line (and the field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smtpbench.recording import (
    RecordedReply,
    RecordedSession,
    RecordedStep,
    Recording,
    RecordingError,
    RecordingHeader,
    read_recording,
    write_recording,
)
from smtpbench.recording.codec import content_of

HEADER = RecordingHeader(source="proxy", epoch=1_700_000_000.25, started_at="2023-11-14T22:13:20")


def reply(code: int | None, *lines: str, at: float = 0.0, enhanced: str | None = None):
    return RecordedReply(code, lines or ("Ok",), at, enhanced)


def session(number: int = 0, start: float = 0.0) -> RecordedSession:
    return RecordedSession(
        number=number,
        start=start,
        client="127.0.0.1:40000",
        steps=(
            RecordedStep("banner", replies=(reply(220, "mx ESMTP", at=0.001),)),
            RecordedStep("command", 0.002, b"EHLO c.test", replies=(reply(250, "mx", "SIZE"),)),
            RecordedStep("command", 0.003, b"AUTH PLAIN", redacted=True, replies=(reply(235),)),
            RecordedStep("command", 0.004, b"MAIL FROM:<a@b.test> SIZE=9", replies=(reply(250),)),
            RecordedStep(
                "command",
                0.004,
                b"RCPT TO:<c@d.test>",
                pipelined=True,
                replies=(reply(250, "2.1.5 Ok", enhanced="2.1.5"),),
            ),
            RecordedStep("command", 0.004, b"DATA", True, pipelined=True, replies=(reply(354),)),
            RecordedStep("data", 0.005, content=content_of(b"Hi\r\n.x\r\n", True)),
            RecordedStep("command", 0.006, b"BDAT 3 LAST", content=content_of(b"\xff\x00a", True)),
            RecordedStep("command", 0.007, b"X\xffY", replies=(reply(None, "garbage"),)),
            RecordedStep("sasl", 0.008, None, redacted=True, replies=(reply(235),)),
            RecordedStep("tls", 0.009),
            RecordedStep("unasked", 0.01, replies=(reply(421, "bye"),)),
        ),
        duration=0.02,
        closed_by="server",
    )


def test_what_is_written_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    original = Recording(HEADER, (session(0, 0.5), session(1, 0.1)))
    write_recording(path, original)
    back = read_recording(path)
    assert back.header == HEADER
    # Sessions come back in order of their start.
    assert back.sessions == (session(1, 0.1), session(0, 0.5))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["format"] == "smtpbench-recording"
    step = json.loads(lines[1])["steps"][7]
    assert "base64" in step["content"]  # bytes that are not UTF-8
    assert "line_base64" in json.loads(lines[1])["steps"][8]


def test_content_kept_as_size_and_hash_only(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    hashed = content_of(b"secret message\r\n", keep=False)
    steps = (RecordedStep("data", 0.1, content=hashed, replies=(reply(250),)),)
    write_recording(path, Recording(HEADER, (RecordedSession(0, 0.0, "c", steps),)))
    back = read_recording(path).sessions[0].steps[0].content
    assert back == hashed and back is not None and back.data is None
    assert "secret" not in path.read_text()


def write_lines(path: Path, *lines: object, end: str = "\n") -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + end, encoding="utf-8")
    return path


BAD_REPLY = {"at": 0, "code": 99, "lines": ["x"]}


def good_header() -> dict[str, object]:
    return {"format": "smtpbench-recording", "version": 1, "source": "proxy", "epoch": 1.0}


def good_session(number: int = 0) -> dict[str, object]:
    return {"session": number, "start": 0.0, "client": "c", "steps": []}


@pytest.mark.parametrize(
    ("lines", "end", "message"),
    [
        ([good_header(), good_session(), '{"session": 1, "start": 0.'], "", ":3: truncated"),
        ([good_header(), "{not json"], "\n", ":2: not valid JSON"),
        ([{"format": "other"}], "\n", ":1: header: format: expected 'smtpbench-recording'"),
        ([{**good_header(), "version": 2}], "\n", ":1: header: version: 2 is newer"),
        (
            [good_header(), {**good_session(), "steps": [{"kind": "command", "at": 0}]}],
            "\n",
            ":2: session 0: steps[0].line: missing",
        ),
        (
            [
                good_header(),
                {
                    **good_session(4),
                    "steps": [
                        {"kind": "banner", "replies": [{"at": 0, "code": 99, "lines": ["x"]}]}
                    ],
                },
            ],
            "\n",
            ":2: session 4: steps[0].replies[0].code: expected a reply code",
        ),
        (
            [good_header(), {**good_session(), "start": -1}],
            "\n",
            ":2: session 0: start: a time cannot be negative",
        ),
        ([good_header(), good_session(), good_session()], "\n", ":3: session 0 appears twice"),
        (
            [
                good_header(),
                {
                    **good_session(),
                    "steps": [
                        {
                            "kind": "data",
                            "content": {"size": 3, "sha256": "0" * 64, "text": "abc"},
                        }
                    ],
                },
            ],
            "\n",
            ":2: session 0: steps[0].content.sha256: does not match the content",
        ),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, lines: list[object], end: str, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", *lines, end=end)
    with pytest.raises(RecordingError) as caught:
        read_recording(path)
    assert str(caught.value).startswith(str(path) + ":")
    assert message in str(caught.value)


def test_an_empty_or_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(RecordingError, match="empty"):
        read_recording(empty)
    with pytest.raises(RecordingError, match="cannot read"):
        read_recording(tmp_path / "nothing.jsonl")


def test_a_recording_cut_in_the_middle_of_a_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_recording(path, Recording(HEADER, (session(0), session(1, 1.0))))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(RecordingError, match=r"r\.jsonl:3: truncated"):
        read_recording(path)
