"""Encoding SMTP commands as bytes (RFC 5321 section 4.1.1), with the checks that keep a
generated or replayed command from smuggling a second command onto the line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from smtpbench.protocol.errors import LocalProtocolError

MAX_COMMAND_LINE: Final = 512  # RFC 5321 section 4.5.3.1.4, CRLF included

Parameters = Mapping[str, str | None] | Iterable[str]


def _check(text: str, what: str) -> None:
    if "\r" in text or "\n" in text or "\x00" in text:
        raise LocalProtocolError(f"{what} contains a line break or NUL: {text!r}")


def _encode(line: str) -> bytes:
    try:
        data = line.encode("ascii")
    except UnicodeEncodeError:
        # Only SMTPUTF8 sessions may carry UTF-8; the caller checks the extension.
        data = line.encode("utf-8")
    if len(data) + 2 > MAX_COMMAND_LINE and not line.startswith("AUTH "):
        raise LocalProtocolError(
            f"command line longer than {MAX_COMMAND_LINE} bytes: {line[:40]}..."
        )
    return data + b"\r\n"


def format_parameters(params: Parameters | None) -> str:
    """ESMTP parameters as `` KEY=VALUE KEY`` (leading space included when not empty)."""
    if not params:
        return ""
    # A dict (what sessions pass, every message) is told apart before the ABC's check.
    if isinstance(params, dict) or isinstance(params, Mapping):  # noqa: SIM101
        items = [key if value is None else f"{key}={value}" for key, value in params.items()]
    else:
        items = list(params)
    for item in items:
        _check(item, "ESMTP parameter")
        if " " in item:
            raise LocalProtocolError(f"ESMTP parameter contains a space: {item!r}")
    return " " + " ".join(items)


def _path(address: str) -> str:
    if "\r" in address or "\n" in address or "\x00" in address:  # _check, inlined: hot
        raise LocalProtocolError(f"address contains a line break or NUL: {address!r}")
    if address.startswith("<") and address.endswith(">"):
        return address
    if "<" in address or ">" in address:
        raise LocalProtocolError(f"address has stray angle brackets: {address!r}")
    return f"<{address}>"


def helo(name: str) -> bytes:
    _check(name, "HELO name")
    return _encode(f"HELO {name}")


def ehlo(name: str) -> bytes:
    _check(name, "EHLO name")
    return _encode(f"EHLO {name}")


def lhlo(name: str) -> bytes:
    _check(name, "LHLO name")
    return _encode(f"LHLO {name}")


def mail_from(address: str, params: Parameters | None = None) -> bytes:
    return _encode(f"MAIL FROM:{_path(address)}{format_parameters(params) if params else ''}")


def rcpt_to(address: str, params: Parameters | None = None) -> bytes:
    return _encode(f"RCPT TO:{_path(address)}{format_parameters(params) if params else ''}")


def data() -> bytes:
    return b"DATA\r\n"


def bdat(size: int, last: bool) -> bytes:
    if size < 0:
        raise LocalProtocolError(f"BDAT size cannot be negative: {size}")
    return f"BDAT {size} LAST\r\n".encode() if last else f"BDAT {size}\r\n".encode()


def rset() -> bytes:
    return b"RSET\r\n"


def noop() -> bytes:
    return b"NOOP\r\n"


def vrfy(target: str) -> bytes:
    _check(target, "VRFY argument")
    return _encode(f"VRFY {target}")


def expn(target: str) -> bytes:
    _check(target, "EXPN argument")
    return _encode(f"EXPN {target}")


def starttls() -> bytes:
    return b"STARTTLS\r\n"


def quit_() -> bytes:
    return b"QUIT\r\n"


def xclient(attributes: Mapping[str, str]) -> bytes:
    """Postfix's ``XCLIENT NAME=... ADDR=... HELO=...``: attribute values in xtext."""
    if not attributes:
        raise LocalProtocolError("XCLIENT needs at least one attribute")
    items = []
    for name, value in attributes.items():
        if not name.isalpha() or not name.isascii():
            raise LocalProtocolError(f"XCLIENT attribute name {name!r} is not a word")
        items.append(f"{name.upper()}={xtext(value)}")
    return _encode("XCLIENT " + " ".join(items))


# -- ESMTP parameter values -------------------------------------------------------------


def xtext(text: str) -> str:
    """RFC 3461 section 4: printable ASCII but "+" and "=" as is, every other byte as +HH."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def orcpt(address: str) -> str:
    """The ORCPT value for ``address`` (RFC 3461 section 4.2): ``rfc822;`` and its xtext,
    or for an address that is not ASCII ``utf-8;`` and RFC 6533's utf-8-addr-xtext."""
    if address.isascii():
        return "rfc822;" + xtext(address)
    out = []
    for char in address:
        code = ord(char)
        if code < 128 and 33 <= code <= 126 and char not in "+=\\":
            out.append(char)
        else:
            out.append(f"\\x{{{code:X}}}")
    return "utf-8;" + "".join(out)
