"""Completion of what is typed in the shell: SMTP commands, the shell's own commands,
and the extensions the server advertised (AUTH mechanisms, MAIL and RCPT parameters)."""

from __future__ import annotations

from collections.abc import Callable

from textual.suggester import Suggester

from smtpbench.protocol.capabilities import Capabilities
from smtpbench.protocol.sasl import MECHANISMS

COMMANDS: tuple[str, ...] = (
    "EHLO ",
    "HELO ",
    "LHLO ",
    "MAIL FROM:<",
    "RCPT TO:<",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "STARTTLS",
    "AUTH ",
    "VRFY ",
    "EXPN ",
    "HELP",
    "BDAT ",
    "ETRN ",
)
SHELL_COMMANDS: tuple[str, ...] = (
    "/auth ",
    "/compose",
    "/lax",
    "/save ",
    "/repeat ",
    "/help",
    "/quit",
)
# Extensions whose command is only worth offering when advertised.
_NEEDS = {"STARTTLS": "STARTTLS", "AUTH ": "AUTH", "BDAT ": "CHUNKING", "ETRN ": "ETRN"}


def mail_parameters(caps: Capabilities) -> list[str]:
    """MAIL FROM parameters the server's extensions allow (RFC 1870, 6152, 6531, 3461,
    8689, 2852, 6710)."""
    out = []
    if caps.size is not None:
        out.append("SIZE=")
    if caps.eightbitmime:
        out.append("BODY=8BITMIME")
    if caps.has("BINARYMIME"):
        out.append("BODY=BINARYMIME")
    if caps.smtputf8:
        out.append("SMTPUTF8")
    if caps.dsn:
        out += ["RET=HDRS", "RET=FULL", "ENVID="]
    if caps.has("REQUIRETLS"):
        out.append("REQUIRETLS")
    if caps.has("DELIVERBY"):
        out.append("BY=")
    if caps.has("MT-PRIORITY"):
        out.append("MT-PRIORITY=")
    return out


def rcpt_parameters(caps: Capabilities) -> list[str]:
    if not caps.dsn:
        return []
    return ["NOTIFY=SUCCESS,FAILURE,DELAY", "NOTIFY=NEVER", "ORCPT=rfc822;"]


def complete(text: str, caps: Capabilities) -> str | None:
    """The whole line ``text`` completes to, or None."""
    if not text:
        return None
    upper = text.upper()
    if text.startswith("/"):
        if upper.startswith("/AUTH "):
            return _word(text, len("/auth "), _mechanisms(caps))
        return _first(text, [c for c in SHELL_COMMANDS if c.upper().startswith(upper)])
    if upper.startswith("AUTH "):
        return _word(text, len("AUTH "), _mechanisms(caps))
    if upper.startswith("MAIL FROM:") and ">" in text:
        return _parameter(text, mail_parameters(caps))
    if upper.startswith("RCPT TO:") and ">" in text:
        return _parameter(text, rcpt_parameters(caps))
    advertised = bool(caps.keywords)
    candidates = [
        command
        for command in COMMANDS
        if command.startswith(upper)
        and (not advertised or command not in _NEEDS or caps.has(_NEEDS[command]))
    ]
    return _first(text, candidates)


def _mechanisms(caps: Capabilities) -> list[str]:
    offered = sorted(caps.auth)
    return offered + [name for name in MECHANISMS if name not in offered]


def _first(text: str, candidates: list[str]) -> str | None:
    for candidate in candidates:
        if len(candidate) > len(text):
            return text + candidate[len(text) :]
    return None


def _word(text: str, start: int, words: list[str]) -> str | None:
    """Completes the word that begins at ``start`` (and only that one)."""
    partial = text[start:]
    if " " in partial:
        return None
    for word in words:
        if word.startswith(partial.upper()) and len(word) > len(partial):
            return text + word[len(partial) :]
    return None


def _parameter(text: str, parameters: list[str]) -> str | None:
    """Completes the parameter being typed after the address."""
    head, _, partial = text.rpartition(" ")
    if ">" in partial:  # still on the address
        return None
    used = {word.split("=", 1)[0].upper() for word in head.split()[2:]}
    for parameter in parameters:
        name = parameter.split("=", 1)[0]
        if name in used:
            continue
        if parameter.startswith(partial.upper()) and len(parameter) > len(partial):
            return text + parameter[len(partial) :]
    return None


class CommandSuggester(Suggester):
    """Suggests from ``complete`` against what the server advertises now."""

    def __init__(self, capabilities: Callable[[], Capabilities]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.capabilities = capabilities

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.capabilities())
