"""The composer's message: headers, body and attachments made into RFC 5322 bytes with
CRLF line ends (the driver dot-stuffs them), and what the user typed for completion."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from pathlib import Path


class ComposeError(ValueError):
    """A field of the composer is wrong: says which and why."""


@dataclass(frozen=True, slots=True)
class Draft:
    sender: str
    recipients: tuple[str, ...]
    subject: str = ""
    headers: str = ""  # "Name: value" lines
    body: str = ""
    attachments: tuple[str, ...] = ()  # file paths


def addresses(text: str) -> tuple[str, ...]:
    """``a@x, b@y`` or ``<a@x> b@y`` as addresses, in order."""
    words = text.replace(",", " ").replace(";", " ").split()
    return tuple(word.strip("<>") for word in words if word.strip("<>"))


def attachment_paths(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_message(draft: Draft, *, date: str | None = None, message_id: str | None = None) -> bytes:
    """The message's bytes; ``ComposeError`` naming the field (and line) that is wrong."""
    if not draft.sender:
        raise ComposeError("From: give the sender's address")
    if not draft.recipients:
        raise ComposeError("To: give at least one recipient")
    message = EmailMessage(policy=SMTP)
    try:
        message["From"] = draft.sender
        message["To"] = ", ".join(draft.recipients)
        if draft.subject:
            message["Subject"] = draft.subject
    except (ValueError, TypeError) as err:
        raise ComposeError(f"From/To/Subject: {err}") from None
    message["Date"] = date or formatdate(localtime=True)
    domain = draft.sender.rpartition("@")[2] or None
    message["Message-ID"] = message_id or make_msgid(domain=domain)
    _add_headers(message, draft.headers)
    message.set_content(draft.body.replace("\r\n", "\n"))
    _attach(message, draft.attachments)
    return message.as_bytes(policy=SMTP)


def _add_headers(message: EmailMessage, text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or any(c.isspace() or not 33 <= ord(c) <= 126 for c in name):
            raise ComposeError(f"headers, line {number}: expected Name: value, got {line!r}")
        try:
            message[name] = value.strip()
        except (ValueError, TypeError) as err:
            raise ComposeError(f"headers, line {number}: {err}") from None


def _attach(message: EmailMessage, paths: Sequence[str]) -> None:
    for text in paths:
        path = Path(text).expanduser()
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ComposeError(f"attachment {text}: {err.strerror or err}") from None
        kind, encoding = mimetypes.guess_type(path.name)
        if kind is None or encoding is not None:
            kind = "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
