"""Recording values to and from the JSON objects of the file, one object a line.

Decoding checks every field and says which one is wrong, as a dotted path
(``steps[3].replies[0].code``); the reader adds the file and the line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from smtpbench.recording.model import (
    STEP_KINDS,
    Content,
    RecordedReply,
    RecordedSession,
    RecordedStep,
    RecordingHeader,
)

FORMAT: Final = "smtpbench-recording"
VERSION: Final = 1
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROUND = 6  # microseconds are plenty for times in a recording


class FieldError(ValueError):
    """A field of one line is missing or wrong: ``path`` says which."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# -- encoding -----------------------------------------------------------------------


def _time(value: float) -> float:
    return round(value, _ROUND)


def encode_bytes(data: bytes, text_key: str, b64_key: str) -> dict[str, str]:
    """UTF-8 text where it is text, base64 where it is not."""
    try:
        return {text_key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {b64_key: base64.b64encode(data).decode("ascii")}


def encode_header(header: RecordingHeader) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "source": header.source,
        "epoch": round(header.epoch, _ROUND),
        "started_at": header.started_at,
        "server": header.server,
        "content": header.content,
        "auth": header.auth,
        "smtpbench": header.smtpbench,
    }
    out.update(header.extra)
    return out


def encode_content(content: Content) -> dict[str, Any]:
    out: dict[str, Any] = {"size": content.size, "sha256": content.sha256}
    if content.data is not None:
        out.update(encode_bytes(content.data, "text", "base64"))
    return out


def encode_reply(reply: RecordedReply) -> dict[str, Any]:
    out: dict[str, Any] = {"at": _time(reply.at), "code": reply.code}
    if reply.enhanced is not None:
        out["enhanced"] = reply.enhanced
    out["lines"] = list(reply.lines)
    return out


def encode_step(step: RecordedStep) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": step.kind, "at": _time(step.at)}
    if step.line is not None:
        out.update(encode_bytes(step.line, "line", "line_base64"))
    if step.bare_lf:
        out["bare_lf"] = True
    if step.pipelined:
        out["pipelined"] = True
    if step.redacted:
        out["redacted"] = True
    if step.content is not None:
        out["content"] = encode_content(step.content)
    if step.kind != "tls":
        out["replies"] = [encode_reply(reply) for reply in step.replies]
    return out


def encode_session(session: RecordedSession) -> dict[str, Any]:
    return {
        "session": session.number,
        "start": _time(session.start),
        "client": session.client,
        "duration": _time(session.duration),
        "closed_by": session.closed_by,
        "steps": [encode_step(step) for step in session.steps],
    }


# -- decoding -----------------------------------------------------------------------


def _at(obj: Mapping[str, Any], key: str, path: str) -> str:
    return f"{path}.{key}" if path else key


def _get(obj: Mapping[str, Any], key: str, path: str, default: Any = ...) -> Any:
    if key in obj:
        return obj[key]
    if default is ...:
        raise FieldError(_at(obj, key, path), "missing")
    return default


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(path, f"expected an object, got {_show(value)}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError(path, f"expected a list, got {_show(value)}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"expected a string, got {_show(value)}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(path, f"expected true or false, got {_show(value)}")
    return value


def _seconds(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(path, f"expected a number of seconds, got {_show(value)}")
    if value < 0:
        raise FieldError(path, f"a time cannot be negative, got {value}")
    return float(value)


def _count(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FieldError(path, f"expected a whole number, 0 or more, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bytes(obj: Mapping[str, Any], text_key: str, b64_key: str, path: str) -> bytes | None:
    if text_key in obj and b64_key in obj:
        raise FieldError(_at(obj, text_key, path), f"give {text_key} or {b64_key}, not both")
    if text_key in obj:
        return _string(obj[text_key], _at(obj, text_key, path)).encode("utf-8")
    if b64_key in obj:
        where = _at(obj, b64_key, path)
        try:
            return base64.b64decode(_string(obj[b64_key], where), validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(where, "not valid base64") from None
    return None


def decode_header(obj: Any) -> RecordingHeader:
    obj = _object(obj, "")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise FieldError("format", f"expected {FORMAT!r}: is this a recording? got {_show(fmt)}")
    version = obj.get("version")
    if version != VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise FieldError(
                "version", f"{version} is newer than this smtpbench reads ({VERSION}); upgrade"
            )
        raise FieldError("version", f"expected {VERSION}, got {_show(version)}")
    source = _string(_get(obj, "source", ""), "source")
    content = _get(obj, "content", "", "full")
    if content not in ("full", "hash"):
        raise FieldError("content", f"expected 'full' or 'hash', got {_show(content)}")
    auth = _get(obj, "auth", "", "redacted")
    if auth not in ("redacted", "kept"):
        raise FieldError("auth", f"expected 'redacted' or 'kept', got {_show(auth)}")
    known = {"format", "version", "source", "epoch", "started_at", "server", "content", "auth"}
    known.add("smtpbench")
    return RecordingHeader(
        source=source,
        epoch=_seconds(_get(obj, "epoch", ""), "epoch"),
        started_at=_string(_get(obj, "started_at", "", ""), "started_at"),
        server=_string(_get(obj, "server", "", ""), "server"),
        content=content,
        auth=auth,
        smtpbench=_string(_get(obj, "smtpbench", "", ""), "smtpbench"),
        extra={key: value for key, value in obj.items() if key not in known},
    )


def decode_content(obj: Any, path: str) -> Content:
    obj = _object(obj, path)
    size = _count(_get(obj, "size", path), f"{path}.size")
    digest = _string(_get(obj, "sha256", path), f"{path}.sha256")
    if not _SHA256.match(digest):
        raise FieldError(f"{path}.sha256", "expected 64 lower-case hexadecimal digits")
    data = _bytes(obj, "text", "base64", path)
    if data is not None:
        if len(data) != size:
            raise FieldError(f"{path}.size", f"says {size} but the content has {len(data)} bytes")
        if hashlib.sha256(data).hexdigest() != digest:
            raise FieldError(f"{path}.sha256", "does not match the content")
    return Content(size, digest, data)


def decode_reply(obj: Any, path: str) -> RecordedReply:
    obj = _object(obj, path)
    code = _get(obj, "code", path)
    if code is not None and (
        isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599
    ):
        raise FieldError(
            f"{path}.code", f"expected a reply code (200-599) or null, got {_show(code)}"
        )
    lines = _list(_get(obj, "lines", path), f"{path}.lines")
    texts = tuple(_string(line, f"{path}.lines[{i}]") for i, line in enumerate(lines))
    if not texts:
        raise FieldError(f"{path}.lines", "a reply has at least one line")
    enhanced = _get(obj, "enhanced", path, None)
    if enhanced is not None and (not isinstance(enhanced, str) or not _ENHANCED.match(enhanced)):
        raise FieldError(
            f"{path}.enhanced", f"expected a code such as 2.1.5, got {_show(enhanced)}"
        )
    return RecordedReply(code, texts, _seconds(_get(obj, "at", path), f"{path}.at"), enhanced)


def decode_step(obj: Any, path: str) -> RecordedStep:
    obj = _object(obj, path)
    kind = _get(obj, "kind", path)
    if kind not in STEP_KINDS:
        known = ", ".join(STEP_KINDS)
        raise FieldError(f"{path}.kind", f"expected one of {known}, got {_show(kind)}")
    line = _bytes(obj, "line", "line_base64", path)
    if line is not None and (b"\n" in line or (line.endswith(b"\r"))):
        raise FieldError(f"{path}.line", "a line holds no line end")
    redacted = _bool(_get(obj, "redacted", path, False), f"{path}.redacted")
    if kind == "command" and line is None:
        raise FieldError(f"{path}.line", "missing: a command has its line")
    if kind == "sasl" and line is None and not redacted:
        raise FieldError(f"{path}.line", "missing: a SASL response has its line unless redacted")
    if kind in ("banner", "tls", "unasked", "data") and line is not None:
        raise FieldError(f"{path}.line", f"a {kind} step has no line")
    content = obj.get("content")
    decoded = decode_content(content, f"{path}.content") if content is not None else None
    if kind == "data" and decoded is None:
        raise FieldError(f"{path}.content", "missing: a data step has its content")
    replies = _list(_get(obj, "replies", path, []), f"{path}.replies")
    return RecordedStep(
        kind=kind,
        at=_seconds(_get(obj, "at", path, 0.0), f"{path}.at"),
        line=line,
        bare_lf=_bool(_get(obj, "bare_lf", path, False), f"{path}.bare_lf"),
        pipelined=_bool(_get(obj, "pipelined", path, False), f"{path}.pipelined"),
        content=decoded,
        redacted=redacted,
        replies=tuple(decode_reply(r, f"{path}.replies[{i}]") for i, r in enumerate(replies)),
    )


def decode_session(obj: Any) -> RecordedSession:
    obj = _object(obj, "")
    number = _count(_get(obj, "session", ""), "session")
    steps = _list(_get(obj, "steps", ""), "steps")
    closed_by = _string(_get(obj, "closed_by", "", "client"), "closed_by")
    return RecordedSession(
        number=number,
        start=_seconds(_get(obj, "start", ""), "start"),
        client=_string(_get(obj, "client", "", ""), "client"),
        steps=tuple(decode_step(step, f"steps[{i}]") for i, step in enumerate(steps)),
        duration=_seconds(_get(obj, "duration", "", 0.0), "duration"),
        closed_by=closed_by,
    )


def content_of(data: bytes, keep: bool) -> Content:
    """The ``Content`` of ``data``: with the bytes when ``keep``, else size and hash only."""
    return Content(len(data), hashlib.sha256(data).hexdigest(), data if keep else None)
