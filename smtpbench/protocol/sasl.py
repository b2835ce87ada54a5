"""SMTP AUTH (RFC 4954) mechanisms as small state machines with no I/O, both sides.

Client side: ``client_mechanism(name, username, secret)`` gives a ``Mechanism``
whose ``initial()`` is the AUTH command's initial response (or None when the
mechanism waits for a challenge) and whose ``respond(challenge)`` answers each
334 challenge. Every response is already base64, ready to send as a line.

    PLAIN     RFC 4616: one initial response, NUL authzid NUL user NUL password
    LOGIN     draft-murchison-sasl-login: "Username:" then "Password:" challenges
    CRAM-MD5  RFC 2195: the server's challenge, answered with user and HMAC-MD5 hex
    XOAUTH2   Google/Microsoft: user and bearer token in one initial response;
              a failure comes as a 334 with a JSON error, answered by an empty line

Server side, for the sink and for tests: ``decode_plain``, ``cram_md5_challenge``,
``cram_md5_verify`` and ``decode_xoauth2`` read what a client sent.

Nothing here logs or formats a secret: ``redact_auth_line`` is what transcripts
show instead of an AUTH line or a SASL response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

from smtpbench.protocol.errors import LocalProtocolError, RemoteProtocolError

MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
"""The mechanisms smtpbench speaks, as written in AUTH commands and EHLO replies."""

EMPTY_RESPONSE: Final = "="  # RFC 4954 section 4: an empty initial response


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | bytes) -> bytes:
    """Strict base64 decoding; ``RemoteProtocolError`` for anything else."""
    if text in ("=", b"="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(f"not base64: {text[:40]!r}") from None


def _utf8(text: str, what: str) -> bytes:
    if "\x00" in text or "\r" in text or "\n" in text:
        raise LocalProtocolError(f"the {what} contains NUL or a line break")
    return text.encode("utf-8")


class Mechanism:
    """One client-side SASL exchange."""

    name: str = ""

    def initial(self) -> str | None:
        """The initial response for the AUTH line (base64), or None to wait for a 334."""
        return None

    def respond(self, challenge: str) -> str:
        """The base64 line answering a 334 challenge (its text, still base64)."""
        raise RemoteProtocolError(f"unexpected {self.name} challenge")


class Plain(Mechanism):
    name = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        self._message = b"\x00".join(
            (
                _utf8(authzid, "authorization id"),
                _utf8(username, "user name"),
                _utf8(password, "password"),
            )
        )

    def initial(self) -> str:
        return b64(self._message)


class Login(Mechanism):
    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        self._answers = (b64(_utf8(username, "user name")), b64(_utf8(password, "password")))
        self._step = 0

    def respond(self, challenge: str) -> str:
        # Servers ask "Username:" then "Password:", some in other words: go by order.
        if self._step >= 2:
            raise RemoteProtocolError("LOGIN: a third challenge after the password")
        answer = self._answers[self._step]
        self._step += 1
        return answer


class CramMd5(Mechanism):
    name = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        self._username = _utf8(username, "user name")
        self._password = _utf8(password, "password")
        self._done = False

    def respond(self, challenge: str) -> str:
        if self._done:
            raise RemoteProtocolError("CRAM-MD5: a second challenge")
        self._done = True
        digest = hmac.new(self._password, unb64(challenge), hashlib.md5).hexdigest()
        return b64(self._username + b" " + digest.encode("ascii"))


class XOAuth2(Mechanism):
    name = "XOAUTH2"

    def __init__(self, username: str, token: str) -> None:
        self._message = (
            b"user="
            + _utf8(username, "user name")
            + b"\x01auth=Bearer "
            + _utf8(token, "token")
            + b"\x01\x01"
        )

    def initial(self) -> str:
        return b64(self._message)

    def respond(self, challenge: str) -> str:
        # A 334 here carries the server's JSON error; an empty line gets the final 535.
        return ""


def client_mechanism(name: str, username: str, secret: str) -> Mechanism:
    """The client side of ``name`` (case-insensitive); ``secret`` is the password, or the
    OAuth 2.0 access token for XOAUTH2."""
    key = name.upper()
    if key == "PLAIN":
        return Plain(username, secret)
    if key == "LOGIN":
        return Login(username, secret)
    if key == "CRAM-MD5":
        return CramMd5(username, secret)
    if key == "XOAUTH2":
        return XOAuth2(username, secret)
    raise LocalProtocolError(f"unknown AUTH mechanism {name!r}; known: {', '.join(MECHANISMS)}")


def auth_command(mechanism: Mechanism) -> bytes:
    """The AUTH command line, with the initial response when the mechanism has one."""
    initial = mechanism.initial()
    if initial is None:
        return f"AUTH {mechanism.name}\r\n".encode("ascii")
    return f"AUTH {mechanism.name} {initial or EMPTY_RESPONSE}\r\n".encode("ascii")


def redact_auth_line(line: bytes) -> str:
    """What a transcript shows for a line of an AUTH exchange: never the credentials."""
    if line[:5].upper() == b"AUTH ":
        words = line.split()
        name = words[1].decode("ascii", "replace") if len(words) > 1 else ""
        return f"AUTH {name} (credentials hidden)".replace("  ", " ")
    return "(SASL response hidden)"


# -- the server side -------------------------------------------------------------------


def decode_plain(response: str | bytes) -> tuple[str, str, str]:
    """(authzid, user, password) of a PLAIN response; ``RemoteProtocolError`` if malformed."""
    parts = unb64(response).split(b"\x00")
    if len(parts) != 3:
        raise RemoteProtocolError("PLAIN: expected authzid NUL user NUL password")
    try:
        authzid, user, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise RemoteProtocolError("PLAIN: not UTF-8") from None
    return authzid, user, password


def cram_md5_challenge(hostname: str) -> bytes:
    """A fresh RFC 2195 challenge: ``<random.timestamp@hostname>``."""
    return f"<{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}@{hostname}>".encode("ascii")


def cram_md5_user(response: str | bytes) -> tuple[str, str]:
    """(user, hex digest) of a CRAM-MD5 response."""
    decoded = unb64(response)
    user, sep, digest = decoded.rpartition(b" ")
    if not sep or len(digest) != 32:
        raise RemoteProtocolError("CRAM-MD5: expected user SP 32 hex digits")
    try:
        return user.decode("utf-8"), digest.decode("ascii").lower()
    except UnicodeDecodeError:
        raise RemoteProtocolError("CRAM-MD5: not UTF-8") from None


def cram_md5_verify(challenge: bytes, password: str, digest: str) -> bool:
    expected = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
    return hmac.compare_digest(expected, digest)


def decode_xoauth2(response: str | bytes) -> tuple[str, str]:
    """(user, token) of an XOAUTH2 initial response."""
    fields = unb64(response).split(b"\x01")
    values: dict[bytes, bytes] = {}
    for item in fields:
        key, sep, value = item.partition(b"=")
        if sep:
            values[key] = value
    auth = values.get(b"auth", b"")
    if b"user" not in values or not auth.startswith(b"Bearer "):
        raise RemoteProtocolError("XOAUTH2: expected user=...^Aauth=Bearer ...^A^A")
    try:
        return values[b"user"].decode("utf-8"), auth[7:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("XOAUTH2: not UTF-8") from None
