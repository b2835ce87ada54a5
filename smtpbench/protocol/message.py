"""Message content on the wire: dot-stuffing and the end-of-data marker (RFC 5321 4.5.2)."""

from __future__ import annotations

from typing import Final

END_OF_DATA: Final = b".\r\n"


def dot_stuff(content: bytes, dots: tuple[int, ...] | None = None) -> bytes:
    """Content ready to send after a 354 reply, terminator included.

    Every line that starts with "." gets a second one, and the message ends with
    CRLF "." CRLF. Content is expected to use CRLF line endings already; a
    missing final CRLF is added, since the terminator must start a line.
    ``dots``: where the lines that start with "." start, when the caller knows (a
    message it generated: ``()`` for none); the content is then not looked through
    for them, which costs more than the rest of this together.
    """
    if dots is None:
        stuffed = content.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
    elif dots:
        pieces = []
        last = 0
        for at in dots:
            pieces.append(content[last:at])
            last = at
        pieces.append(content[last:])
        stuffed = b".".join(pieces)  # a dot before each of those lines
    else:
        stuffed = content
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + END_OF_DATA


def dot_unstuff(stuffed: bytes) -> bytes:
    """The inverse of ``dot_stuff`` for content between the 354 reply and the final dot,
    terminator excluded: what a server stores."""
    if stuffed.startswith(b".."):
        stuffed = stuffed[1:]
    return stuffed.replace(b"\r\n..", b"\r\n.")
