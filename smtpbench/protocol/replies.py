"""SMTP replies and the incremental parser that turns server bytes into them.

Rules (RFC 5321 section 4.2):
- a reply is one or more lines ``CODE-text`` ending with one ``CODE text`` (or a bare ``CODE``);
- every line of one reply carries the same three-digit code, first digit 2 to 5;
- lines end with CRLF; a bare LF is accepted because real servers send it, a NUL is not;
- a line longer than ``max_line_length`` or a reply of more than ``max_lines`` lines is a
  protocol error, so a misbehaving server cannot make us buffer without bound;
- an enhanced status code (RFC 3463, ``2.1.5``) leads the text when its class matches the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from smtpbench.protocol.errors import RemoteProtocolError

DEFAULT_MAX_LINE_LENGTH = 4096  # RFC 5321 allows 512; real servers exceed it, we stay bounded
DEFAULT_MAX_LINES = 256

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # the text of each line, code and separator removed
    enhanced: str | None = None  # "2.1.5" when the server uses enhanced status codes

    @property
    def text(self) -> str:
        """The first line's text without the enhanced code: what a summary shows."""
        first = self.lines[0] if self.lines else ""
        if self.enhanced is not None:
            first = first[len(self.enhanced) :].lstrip()
        return first

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        head = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        return head + self.text


def _enhanced_code(code: int, text: str) -> str | None:
    # Most replies either lack one or start "2.1.0 ": look before running the regex.
    if len(text) < 5 or text[1] != "." or text[0] != str(code // 100):
        return None
    match = _ENHANCED.match(text)
    if match is None or int(match.group(1)) != code // 100:
        return None
    return f"{match.group(1)}.{match.group(2)}.{match.group(3)}"


# Replies already parsed, by their bytes as received: servers repeat a handful of lines
# ("250 2.1.0 Ok") and the same EHLO reply all run long, and a Reply is immutable, so
# each is parsed once. One-line replies are kept by their line; a multi-line reply by
# its bytes when it came whole in one read.
_SEEN: Final[dict[bytes, Reply]] = {}
_SEEN_LIMIT: Final = 4096  # forgotten whole when full, so a server of unique lines costs nothing
_SEEN_KEY_LIMIT: Final = 2048  # a multi-line reply is kept whole only when it is this short
# Reads that held several whole replies, by their bytes: a pipelined group's replies come
# in one read ("250 2.1.0 Ok", "250 2.1.5 Ok", "354 ..."), the same for every message of
# a run when the server's replies do not vary. Each such read is parsed once.
_SEEN_READS: Final[dict[bytes, tuple[Reply, ...]]] = {}


class ReplyParser:
    """Feed bytes in, take whole replies out; keeps partial lines between feeds."""

    __slots__ = (
        "_buffer",
        "_code",
        "_lines",
        "_read",
        "_read_replies",
        "_ready",
        "_scan_from",
        "max_line_length",
        "max_lines",
    )

    def __init__(
        self,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_lines: int = DEFAULT_MAX_LINES,
    ) -> None:
        self._buffer = b""
        self._scan_from = 0  # where to resume looking for LF: avoids rescanning a long line
        self._code = 0
        self._lines: list[str] = []
        self.max_line_length = max_line_length
        self.max_lines = max_lines
        self._ready: list[Reply] = []  # replies of a read seen before, not yet taken
        # The read being parsed, when it came to an empty parser, and its replies so far:
        # once it is used up by whole replies, it is remembered in ``_SEEN_READS``.
        self._read = b""
        self._read_replies: list[Reply] = []

    @property
    def buffered(self) -> bool:
        """Bytes are waiting: a reply, or part of one."""
        return bool(self._buffer) or bool(self._ready)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        # Most reads hold exactly what is needed: keep them as they are, uncopied.
        self._buffer = self._buffer + data if self._buffer else bytes(data)
        self._read = b""  # more bytes came: the read being parsed is no longer all of it

    def take(self, data: bytes | bytearray | memoryview) -> Reply | None:
        """``feed`` then ``next_reply`` in one call: what happens to every read. A read
        that is one whole reply already seen, with nothing before it, is looked up only
        (``data`` as bytes; a bytearray or a view goes the long way, unhashable)."""
        if (
            type(data) is bytes
            and not self._buffer
            and not self._lines
            and not self._scan_from
            and not self._ready
        ):
            seen = _SEEN.get(data)
            if seen is not None:
                return seen
            replies = _SEEN_READS.get(data)
            if replies is not None:
                self._ready = list(replies[1:])
                return replies[0]
            self.feed(data)
            if len(data) <= _SEEN_KEY_LIMIT:
                self._read = data
                self._read_replies = []
            return self.next_reply()
        self.feed(data)
        return self.next_reply()

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        ready = self._ready
        if ready:
            return ready.pop(0)
        reply = self._parse()
        read = self._read
        if read:
            if reply is None:
                self._read = b""  # the read ended inside a reply
            else:
                replies = self._read_replies
                replies.append(reply)
                if not self._buffer:  # the read was whole replies, every one taken
                    self._read = b""
                    if len(replies) > 1:
                        if len(_SEEN_READS) >= _SEEN_LIMIT:
                            _SEEN_READS.clear()
                        _SEEN_READS[read] = tuple(replies)
        return reply

    def _parse(self) -> Reply | None:
        whole = b""  # what was buffered, when a reply starts it: the key if it is all of one
        if not self._lines and not self._scan_from:
            whole = self._buffer
            seen = _SEEN.get(whole)
            if seen is not None:  # most reads are one whole reply, an EHLO's as well
                self._buffer = b""
                return seen
        while True:
            buffer = self._buffer
            end = buffer.find(b"\n", self._scan_from)
            if end < 0:
                if len(buffer) > self.max_line_length:
                    raise RemoteProtocolError(
                        f"reply line longer than {self.max_line_length} bytes"
                    )
                self._scan_from = len(buffer)
                return None
            if end > self.max_line_length:
                raise RemoteProtocolError(f"reply line longer than {self.max_line_length} bytes")
            if end + 1 == len(buffer):
                raw = buffer
                self._buffer = b""
            else:
                raw = buffer[: end + 1]
                self._buffer = buffer[end + 1 :]
            self._scan_from = 0
            if not self._lines:
                seen = _SEEN.get(raw)
                if seen is not None:
                    return seen
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            reply = self._take_line(line)
            if reply is not None:
                if len(reply.lines) == 1:
                    key = raw
                elif whole and not self._buffer and len(whole) <= _SEEN_KEY_LIMIT:
                    key = whole  # a multi-line reply that was the whole read
                else:
                    return reply
                if len(_SEEN) >= _SEEN_LIMIT:
                    _SEEN.clear()
                _SEEN[key] = reply
                return reply

    def _take_line(self, line: bytes) -> Reply | None:
        # The code's digits read as bytes: first 2 to 5, second 0 to 5, third any digit.
        if len(line) < 3 or b"\x00" in line:
            raise RemoteProtocolError(f"malformed reply line {_show(line)}")
        first, second, third = line[0] - 48, line[1] - 48, line[2] - 48
        if not (0 <= first <= 9 and 0 <= second <= 9 and 0 <= third <= 9):
            raise RemoteProtocolError(f"malformed reply line {_show(line)}")
        if not 2 <= first <= 5 or second > 5:
            raise RemoteProtocolError(f"reply code out of range in {_show(line)}")
        code = first * 100 + second * 10 + third
        separator = line[3:4]
        if separator not in (b" ", b"-", b""):
            raise RemoteProtocolError(f"malformed reply line {_show(line)}")
        if self._lines and code != self._code:
            raise RemoteProtocolError(
                f"multi-line reply changed code from {self._code} to {code}: {_show(line)}"
            )
        self._code = code
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if separator == b"-":
            if len(self._lines) >= self.max_lines:
                raise RemoteProtocolError(f"reply longer than {self.max_lines} lines")
            return None
        lines = tuple(self._lines)
        self._lines = []
        return Reply(code, lines, _enhanced_code(code, lines[0]))


def _show(line: bytes, limit: int = 60) -> str:
    text = repr(line[:limit])
    return text + ("..." if len(line) > limit else "")
