"""MIME messages of the ``[content]`` mix, built fast enough for a load test.

Each kind of the mix is laid out once by the standard ``email`` package (the
structure, the part headers, fixed boundaries, the inline images), with markers
where the per-message content goes. A message is then that layout with the
markers replaced: a slice of the factory's filler text for the text (and HTML)
part, and for an attachment a run of base64 lines cut out of one block encoded
once. So a message costs a few joins whatever its size, and the bytes a server
receives parse back, with ``email``, to the structure and the attachment bytes
that were meant.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Final

from smtpbench.scenario.content_spec import MixPart

_TEXT_MARK: Final = "smtpbench-text-goes-here"
_HTML_MARK: Final = "smtpbench-html-goes-here"
_ATTACHMENT_MARK: Final = b"\xffsmtpbench attachment goes here\xff"
_LINE_BYTES: Final = 57  # decoded bytes per base64 line of 76 characters
BLOCK_LINES: Final = 18396  # about 1 MiB of random bytes, a whole number of lines
BLOCK_SIZE: Final = _LINE_BYTES * BLOCK_LINES


@dataclass(frozen=True, slots=True)
class Layout:
    """One kind of the mix, laid out: the top-level MIME headers (CRLF-ended lines) and
    the body cut at its markers, which ``parts`` name in order ("text", "html",
    "attachment")."""

    headers: bytes
    pieces: tuple[bytes, ...]  # len(parts) + 1
    parts: tuple[str, ...]


class MimeMix:
    """The layouts of one scenario's mix and the attachment block, made once per factory."""

    def __init__(self, mix: tuple[MixPart, ...], seed: int) -> None:
        self.mix = mix
        self.seed = seed
        self._layouts: dict[int, Layout] = {}
        self._block: bytes | None = None
        self._lines: bytes | None = None

    def layout(self, index: int) -> Layout:
        layout = self._layouts.get(index)
        if layout is None:
            layout = _lay_out(self.mix[index], f"=_smtpbench_{self.seed:x}_{index}")
            self._layouts[index] = layout
        return layout

    # -- the attachment block ---------------------------------------------------------

    @property
    def block(self) -> bytes:
        """The random bytes every attachment is cut from (cyclically)."""
        if self._block is None:
            self._block = random.Random(f"attachments:{self.seed}").randbytes(BLOCK_SIZE)
        return self._block

    def _encoded_lines(self) -> bytes:
        if self._lines is None:
            self._lines = base64.encodebytes(self.block).replace(b"\n", b"\r\n")
        return self._lines

    def attachment_bytes(self, start_line: int, size: int) -> bytes:
        """The decoded attachment: ``size`` bytes of the block from line ``start_line``,
        wrapping around."""
        block = self.block
        begin = (start_line % BLOCK_LINES) * _LINE_BYTES
        out = bytearray()
        while len(out) < size:
            take = min(size - len(out), len(block) - begin)
            out += block[begin : begin + take]
            begin = 0
        return bytes(out)

    def attachment_base64(self, start_line: int, size: int) -> bytes:
        """``attachment_bytes(start_line, size)`` in base64 lines, CRLF-ended: whole lines
        sliced from the block encoded once, the last partial line encoded now."""
        lines = self._encoded_lines()
        width = 78  # 76 characters and CRLF
        whole, rest = divmod(size, _LINE_BYTES)
        first = start_line % BLOCK_LINES
        chunks = []
        line = first
        left = whole
        while left:
            take = min(left, BLOCK_LINES - line)
            chunks.append(lines[line * width : (line + take) * width])
            left -= take
            line = 0 if line + take == BLOCK_LINES else line + take
        if rest:
            begin = (first + whole) % BLOCK_LINES * _LINE_BYTES
            tail = self.block[begin : begin + rest]
            chunks.append(base64.b64encode(tail) + b"\r\n")
        return b"".join(chunks)

    # -- one message ------------------------------------------------------------------

    def body(
        self, index: int, text: bytes, attachment: tuple[int, int] | None
    ) -> tuple[bytes, bytes]:
        """(top-level MIME headers, body) of kind ``index`` with ``text`` (CRLF lines) in
        its text parts and, for an attachment kind, ``attachment`` = (start line, size)."""
        layout = self.layout(index)
        pieces = layout.pieces
        out = [pieces[0]]
        for number, part in enumerate(layout.parts):
            if part == "text":
                out.append(text)
            elif part == "html":
                out.append(_html_paragraphs(text))
            else:
                assert attachment is not None
                out.append(self.attachment_base64(*attachment))
            out.append(pieces[number + 1])
        return layout.headers, b"".join(out)


def _lay_out(part: MixPart, boundary: str) -> Layout:
    message = EmailMessage(policy=policy.SMTP)
    message.set_content(_TEXT_MARK + "\n", charset="us-ascii", cte="7bit")
    if part.kind == "html":
        images = "".join(
            f'<p><img src="cid:image{n}@smtpbench" alt="image {n}"></p>\n'
            for n in range(part.images)
        )
        html = (
            '<!DOCTYPE html>\n<html><head><meta charset="us-ascii"><title>smtpbench'
            f"</title></head>\n<body>\n{_HTML_MARK}\n{images}</body></html>\n"
        )
        message.add_alternative(html, subtype="html", charset="us-ascii", cte="7bit")
        html_part = message.get_payload()[1]  # type: ignore[index]
        assert isinstance(html_part, EmailMessage)
        for n in range(part.images):
            html_part.add_related(
                png(part.image_size, n),
                maintype="image",
                subtype="png",
                cid=f"<image{n}@smtpbench>",
                filename=f"image{n}.png",
                disposition="inline",
            )
        if part.images:
            html_part.set_boundary(boundary + "_related")
        message.set_boundary(boundary)
    elif part.kind == "attachment":
        maintype, _, subtype = part.attachment_type.partition("/")
        message.add_attachment(
            _ATTACHMENT_MARK,
            maintype=maintype,
            subtype=subtype,
            filename=part.attachment_name or f"attachment.{subtype.split('+')[0]}",
        )
        message.set_boundary(boundary)
    for sub in message.walk():
        del sub["MIME-Version"]  # the factory writes it once, at the top
    data = message.as_bytes(policy=policy.SMTP)
    head, _, body = data.partition(b"\r\n\r\n")
    marks = {
        "text": _TEXT_MARK.encode() + b"\r\n",
        "html": _HTML_MARK.encode() + b"\r\n",
        "attachment": base64.b64encode(_ATTACHMENT_MARK) + b"\r\n",
    }
    pieces = []
    parts = []
    rest = body
    while True:
        found = [(rest.find(mark), name) for name, mark in marks.items() if mark in rest]
        if not found:
            pieces.append(rest)
            break
        at, name = min(found)
        pieces.append(rest[:at])
        parts.append(name)
        rest = rest[at + len(marks[name]) :]
    return Layout(head + b"\r\n", tuple(pieces), tuple(parts))


def _html_paragraphs(text: bytes) -> bytes:
    """The text part's lines as HTML paragraphs (the filler has no markup characters)."""
    return b"<p>" + text.rstrip(b"\r\n").replace(b"\r\n", b"</p>\r\n<p>") + b"</p>\r\n"


def png(size: int, number: int) -> bytes:
    """A valid PNG of about ``size`` bytes: random pixels, stored without compression so
    that the size holds (a scanner must still decode it as an image)."""
    width = 64
    row = 1 + 3 * width
    height = max(1, (size - 80) // row)
    rng = random.Random(f"image:{size}:{number}")
    raw = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


__all__ = ["BLOCK_LINES", "BLOCK_SIZE", "Layout", "MimeMix", "png"]
