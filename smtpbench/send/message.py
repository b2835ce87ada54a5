"""The message ``send`` delivers, built with the standard ``email`` package.

Headers a mail client would write (Date, From, To, Subject, Message-ID) come
first; ``--header`` replaces one of them by name or adds its own. The body is
text (UTF-8); each attachment is a MIME part whose content type is guessed
from its file name (``mimetypes``), base64-encoded, so it decodes back to the
same bytes. Lines end in CRLF, as SMTP carries them.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

DEFAULT_BODY = "This is a test message sent by smtpbench.\n"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    mail_from: str
    recipients: tuple[str, ...]
    subject: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (name, value), in the order given
    body: bytes | None = None
    attachments: tuple[tuple[str, bytes], ...] = ()  # (file name, content)
    hostname: str = "localhost"
    eightbit: bool = False  # the server will be told BODY=8BITMIME: 8-bit text goes as is


def build_message(spec: MessageSpec) -> bytes:
    """The message, CRLF line ends; ``ValueError`` when the body is not UTF-8 text."""
    message = EmailMessage(policy=policy.SMTP)
    message["Date"] = formatdate(localtime=True)
    message["From"] = spec.mail_from or "<>"
    if spec.recipients:
        message["To"] = ", ".join(spec.recipients)
    message["Subject"] = spec.subject if spec.subject is not None else "test " + message["Date"]
    message["Message-ID"] = make_msgid(domain=spec.hostname)
    for name, _ in spec.headers:
        if name.lower() in {"date", "from", "to", "subject", "message-id"}:
            del message[name]
    for name, value in spec.headers:
        message[name] = value
    if "X-Mailer" not in message:
        message["X-Mailer"] = "smtpbench"
    try:
        text = spec.body.decode("utf-8") if spec.body is not None else DEFAULT_BODY
    except UnicodeDecodeError as err:
        raise ValueError(f"the body is not UTF-8 text (byte {err.start})") from None
    text = text.replace("\r\n", "\n")
    if text.isascii():
        message.set_content(text)
    else:
        # 8-bit text only where the server was told BODY=8BITMIME; else quoted-printable,
        # which any 7-bit path carries.
        message.set_content(text, cte="8bit" if spec.eightbit else "quoted-printable")
    for name, data in spec.attachments:
        kind, encoding = mimetypes.guess_type(name)
        if kind is None or encoding is not None:
            kind = "application/octet-stream"  # compressed files go as bytes, not as their type
        maintype, subtype = kind.split("/", 1)
        # Text attachments go as bytes too, so they decode back to exactly what the file holds.
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    try:
        return message.as_bytes(policy=policy.SMTP)
    except UnicodeEncodeError:
        return message.as_bytes(policy=policy.SMTPUTF8)


__all__ = ["DEFAULT_BODY", "MessageSpec", "build_message"]
