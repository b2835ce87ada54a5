"""A corpus of real messages to send: ``.eml`` files, a maildir or an mbox file.

Messages are read once, when the run starts, with the standard ``mailbox``
module for maildirs and mbox files; line ends become CRLF. Each send replaces
the Message-ID and Date headers (a server's duplicate detection then counts
every send as a message of its own) and adds the transit header when asked.

The anonymising pass, for corpora taken from production, is done once at load:
every email address (in headers and body) becomes a stable pseudonym at
``example.invalid``, IPv4 addresses become documentation addresses (192.0.2.0/24),
and the headers that trace or authenticate the original delivery (Received,
DKIM-Signature, ARC-*, Authentication-Results, X-Originating-IP, Return-Path,
Delivered-To) are dropped. Subjects and text are kept: read what you ship.
"""

from __future__ import annotations

import functools
import hashlib
import mailbox
import re
from pathlib import Path
from typing import Final

MAX_CORPUS_BYTES: Final = 1024**3  # the corpus is held in memory
MAX_MESSAGE_BYTES: Final = 64 * 1024**2
_REPLACED: Final = (b"message-id", b"date", b"x-smtpbench-id")
_TRACE: Final = (
    b"received", b"dkim-signature", b"arc-seal", b"arc-message-signature",
    b"arc-authentication-results", b"authentication-results", b"x-originating-ip",
    b"return-path", b"delivered-to", b"x-received",
)  # fmt: skip
_ADDRESS = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IPV4 = re.compile(rb"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")


class CorpusError(ValueError):
    """The corpus cannot be used; the message names the file and what is wrong."""


class CorpusMessage:
    """One message of the corpus: its header lines (CRLF-ended, folded lines kept with
    the header they continue) without the replaced ones, and its body."""

    __slots__ = ("body", "headers", "name")

    def __init__(self, name: str, headers: bytes, body: bytes) -> None:
        self.name = name
        self.headers = headers
        self.body = body


@functools.lru_cache(maxsize=2)  # the check before the run, then the run: one read
def read_corpus(path: str, *, anonymise: bool = False) -> tuple[CorpusMessage, ...]:
    """Every message of the corpus at ``path``; ``CorpusError`` naming what is wrong."""
    where = Path(path)
    if where.is_dir():
        if all((where / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raw = _maildir(where)
        else:
            raw = _eml_folder(where)
    elif where.is_file():
        raw = _mbox(where)
    else:
        raise CorpusError(f"{path}: no such file or folder")
    messages = []
    total = 0
    for name, data in raw:
        total += len(data)
        if total > MAX_CORPUS_BYTES:
            raise CorpusError(f"{path}: more than {MAX_CORPUS_BYTES >> 20} MiB of messages")
        if len(data) > MAX_MESSAGE_BYTES:
            raise CorpusError(f"{name}: larger than {MAX_MESSAGE_BYTES >> 20} MiB")
        messages.append(_split(name, data, anonymise))
    if not messages:
        raise CorpusError(f"{path}: no messages in it")
    return tuple(messages)


def _eml_folder(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".eml" and p.is_file())
    out = []
    for file in files:
        try:
            out.append((str(file), file.read_bytes()))
        except OSError as err:
            raise CorpusError(f"{file}: {err.strerror or err}") from None
    if not files:
        raise CorpusError(f"{folder}: no .eml files in it (nor cur/new/tmp of a maildir)")
    return out


def _maildir(folder: Path) -> list[tuple[str, bytes]]:
    try:
        box = mailbox.Maildir(folder, factory=None, create=False)
        return [(f"{folder}/{key}", box.get_bytes(key)) for key in sorted(box.keys())]
    except OSError as err:
        raise CorpusError(f"{folder}: {err.strerror or err}") from None


def _mbox(file: Path) -> list[tuple[str, bytes]]:
    try:
        with file.open("rb") as handle:
            start = handle.read(5)
    except OSError as err:
        raise CorpusError(f"{file}: {err.strerror or err}") from None
    if start != b"From ":
        raise CorpusError(
            f"{file}: not an mbox file (it does not start with a 'From ' line); "
            "a corpus is a folder of .eml files, a maildir, or an mbox file"
        )
    try:
        box = mailbox.mbox(file, create=False)
        return [(f"{file} message {n + 1}", box.get_bytes(key)) for n, key in enumerate(box.keys())]
    except (OSError, mailbox.Error) as err:
        raise CorpusError(f"{file}: {err}") from None


def _split(name: str, data: bytes, anonymise: bool) -> CorpusMessage:
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        if b":" not in head.split(b"\r\n", 1)[0]:
            raise CorpusError(f"{name}: not a message (no header block)")
        body = b""
    fields = _fields(head + b"\r\n")
    if not fields or not any(n == b"from" for n, _ in fields):
        raise CorpusError(f"{name}: not a message (no From header)")
    kept = [line for lowered, line in fields if lowered not in _REPLACED]
    if anonymise:
        kept = [line for line in kept if line.split(b":", 1)[0].strip().lower() not in _TRACE]
        kept = [_pseudonymise(line) for line in kept]
        body = _pseudonymise(body)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return CorpusMessage(name, b"".join(kept), body)


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lowered name, whole field with its folded lines) for each header field."""
    out: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and out:
            name, whole = out[-1]
            out[-1] = (name, whole + line + b"\r\n")
        elif b":" in line:
            out.append((line.split(b":", 1)[0].strip().lower(), line + b"\r\n"))
        elif line.startswith(b"From "):  # an mbox separator left in: not a header
            continue
    return out


def _pseudonymise(data: bytes) -> bytes:
    def address(match: re.Match[bytes]) -> bytes:
        digest = hashlib.sha256(match.group(0).lower()).hexdigest()[:10]
        return f"user-{digest}@example.invalid".encode()

    def ipv4(match: re.Match[bytes]) -> bytes:
        return (
            b"192.0.2."
            + str(int(hashlib.sha256(match.group(0)).hexdigest()[:2], 16) % 254 + 1).encode()
        )

    return _IPV4.sub(ipv4, _ADDRESS.sub(address, data))


__all__ = ["CorpusError", "CorpusMessage", "read_corpus"]
