"""What ``send`` prints: the conversation as a person reads it (rich), or as JSON.

Each line sent is ``C:``, each reply line ``S:``; after each reply, when it
came (from the start of the session), its service time (the engine's timing
rules), and what its basic and enhanced status codes mean (the same tables as
the run summary: ``protocol/codes.py``, ``protocol/enhanced.py``). The message
content is shown up to ``CONTENT_LINES`` lines; AUTH lines never show
credentials.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.enhanced import enhanced_meaning
from smtpbench.protocol.replies import Reply
from smtpbench.send.session import ACCEPTED, STOPPED, Line, SendResult

CONTENT_LINES = 30


def sent_text(line: Line) -> str:
    sent = line.sent
    if isinstance(sent, bytes):
        return sent.decode("utf-8", "replace").rstrip("\r\n")
    if isinstance(sent, str):
        return sent
    if isinstance(sent, int):
        return f"(message content, {sent} bytes, and the final dot)"
    return "(connect)"


def meaning(reply: Reply) -> str:
    text = reply_meaning(reply.code)
    if reply.enhanced:
        text += f"; {reply.enhanced}: {enhanced_meaning(reply.enhanced)}"
    return text


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


def result_dict(result: SendResult) -> dict[str, Any]:
    lines = []
    for line in result.lines:
        entry: dict[str, Any] = {"sent": sent_text(line) if line.sent is not None else None}
        if line.pipelined:
            entry["pipelined"] = True
        if isinstance(line.sent, int):
            entry["content_bytes"] = line.sent
        if line.reply is None:
            entry["reply"] = None
        else:
            entry["reply"] = {
                "code": line.reply.code,
                "enhanced": line.reply.enhanced,
                "lines": list(line.reply.lines),
                "meaning": reply_meaning(line.reply.code),
                "enhanced_meaning": enhanced_meaning(line.reply.enhanced)
                if line.reply.enhanced
                else None,
                "at_seconds": line.at,
                "seconds": line.seconds,
            }
        lines.append(entry)
    return {
        "server": result.server,
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "detail": result.detail,
        "connect_seconds": result.connect_seconds,
        "tls": result.tls,
        "tls_handshake_seconds": result.tls_seconds,
        "accepted_recipients": result.accepted,
        "refused_recipients": result.refused,
        "message_bytes": len(result.content),
        "duration_seconds": result.duration,
        "transcript": lines,
    }


def result_json(result: SendResult) -> str:
    return json.dumps(result_dict(result), indent=2, ensure_ascii=False)


def result_renderable(result: SendResult, *, show_content: bool = True) -> RenderableType:
    parts: list[RenderableType] = [Text(f"smtpbench send to {result.server}", style="bold")]
    for line in result.lines:
        if line.sent is None:
            head = Text("=== connected", style="dim")
            if result.connect_seconds is not None:
                head.append(f" in {_ms(result.connect_seconds)}", style="dim")
            parts.append(head)
        elif isinstance(line.sent, int) and show_content:
            parts.extend(_content(result.content, line.sent))
        else:
            mark = " (pipelined)" if line.pipelined else ""
            parts.append(Text(f" C: {sent_text(line)}", style="cyan").append(mark, style="dim"))
        if line.reply is None:
            parts.append(Text(" S: (no reply)", style="red"))
            continue
        parts.extend(_reply(line))
        if line.sent is not None and sent_text(line) == "STARTTLS" and line.reply.code == 220:
            parts.extend(_tls(result))
    if result.tls is not None and not any(
        isinstance(line.sent, bytes) and line.sent.startswith(b"STARTTLS") for line in result.lines
    ):
        parts[1:1] = _tls(result)  # implicit TLS: before the banner
    parts.append(_verdict(result))
    return Group(*parts)


def _reply(line: Line) -> list[Text]:
    reply = line.reply
    assert reply is not None
    style = "green" if reply.code < 400 else "yellow" if reply.code < 500 else "red"
    texts = reply.lines or ("",)
    out = []
    for number, text in enumerate(texts):
        separator = " " if number == len(texts) - 1 else "-"
        out.append(Text(f" S: {reply.code}{separator}{text}", style=style))
    note = Text("    ", style="dim")
    if line.at is not None:
        note.append(f"at {_ms(line.at)}", style="dim")
    if line.seconds is not None:
        note.append(f", took {_ms(line.seconds)}", style="dim")
    note.append(f"  {meaning(reply)}", style="dim italic")
    out.append(note)
    return out


def _content(content: bytes, size: int) -> list[Text]:
    lines = content.decode("utf-8", "replace").split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    shown = lines[:CONTENT_LINES]
    out = [Text(f" C: {text}", style="blue") for text in shown]
    if len(lines) > len(shown):
        out.append(Text(f" C: ... {len(lines) - len(shown)} more lines", style="dim"))
    out.append(Text(" C: .", style="blue"))
    out.append(Text(f"    (message: {len(content)} bytes, {size} on the wire)", style="dim"))
    return out


def _tls(result: SendResult) -> list[Text]:
    tls = result.tls
    if tls is None:
        return []
    head = Text("=== TLS ", style="bold")
    head.append(f"{tls.get('protocol')} {tls.get('cipher')}")
    if tls.get("bits"):
        head.append(f" ({tls['bits']} bits)")
    if result.tls_seconds is not None:
        head.append(f", handshake {_ms(result.tls_seconds)}", style="dim")
    out = [head]
    if tls.get("verified"):
        out.append(Text(f"    certificate verified for {tls.get('server_name')}", style="green"))
    else:
        out.append(Text("    certificate not verified (--insecure)", style="yellow"))
    for key, label in (("subject", "subject"), ("issuer", "issuer")):
        if tls.get(key):
            out.append(Text(f"    {label:<8} {tls[key]}"))
    if tls.get("names"):
        out.append(Text(f"    names    {', '.join(tls['names'])}"))
    if tls.get("not_after"):
        days = tls.get("days_left")
        out.append(
            Text(f"    valid    {tls.get('not_before')} to {tls['not_after']} ({days} days left)")
        )
    return out


def _verdict(result: SendResult) -> Text:
    good = result.outcome in (ACCEPTED, STOPPED)
    text = Text("\n")
    text.append((result.outcome or "").upper(), style="bold green" if good else "bold red")
    text.append(f": {result.detail}")
    text.append(f" (exit {result.exit_code}, {_ms(result.duration)})", style="dim")
    return text


__all__ = ["meaning", "result_dict", "result_json", "result_renderable", "sent_text"]
