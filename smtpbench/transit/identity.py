"""How a message is recognised downstream: its identifier header and its body's fingerprint.

The identifier is ``<run id>.<session>.<message>`` in an ``X-Smtpbench-Id``
header. The fingerprint is the size and a digest of the body only (what follows
the blank line after the headers), with carriage returns and trailing line
feeds dropped, so that headers a relay adds (``Received``,
``Return-Path``) or a CRLF conversion do not count as an alteration, while any
change to the text does. Content is taken as stored, dot-stuffing undone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

HEADER: Final = "X-Smtpbench-Id"
_HEADER_LINE: Final = re.compile(rb"^x-smtpbench-id:[ \t]*([^\r\n]+?)[ \t]*\r?$", re.I | re.M)


def message_id(run_tag: str, session: int, message: int) -> str:
    return f"{run_tag}.{session}.{message}"


def header_line(run_tag: str, session: int, message: int) -> str:
    return f"{HEADER}: {message_id(run_tag, session, message)}\r\n"


def split_id(ident: str) -> tuple[str, int, int] | None:
    """``(run tag, session, message)`` of an identifier, or None when it is not one."""
    tag, _, rest = ident.partition(".")
    session, _, message = rest.partition(".")
    if not tag or not session.isdigit() or not message.isdigit():
        return None
    return tag, int(session), int(message)


def _split(content: bytes) -> tuple[bytes, bytes]:
    """Header block and body, at the first blank line (CRLF CRLF, or LF LF from a relay that
    stores bare line feeds); a message with no blank line is all header."""
    crlf = content.find(b"\r\n\r\n")
    lf = content.find(b"\n\n", 0, crlf if crlf >= 0 else len(content))
    if lf >= 0:
        return content[:lf], content[lf + 2 :]
    if crlf >= 0:
        return content[:crlf], content[crlf + 4 :]
    return content, b""


def find_id(content: bytes) -> str | None:
    """The identifier in the header block, or None (the first one if there are several)."""
    head, _ = _split(content)
    match = _HEADER_LINE.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    size: int  # bytes of the normalised body
    digest: str  # BLAKE2b, 128 bits, hexadecimal


def fingerprint(content: bytes) -> Fingerprint:
    """The body's size and digest, normalised as the module says."""
    _, body = _split(content)
    body = body.translate(None, b"\r").rstrip(b"\n")
    return Fingerprint(len(body), hashlib.blake2b(body, digest_size=16).hexdigest())
