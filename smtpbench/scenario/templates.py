"""Templates for addresses, HELO names and subjects: ``str.format`` with a fixed set of numbers.

Every placeholder stands for an integer, so a template is checked once, when the
scenario is read, by formatting it with sample values: an unknown name, a bad
format spec or an address that does not come out as ``local@domain`` is caught
there and never in the middle of a run.
"""

from __future__ import annotations

import random
import string
from typing import Final

PLACEHOLDERS: Final = ("session", "message", "rcpt", "counter", "random")
"""The names a template may use; each stands for a non-negative integer."""

RANDOM_LIMIT: Final = 1_000_000
"""``{random}`` is drawn from ``range(RANDOM_LIMIT)``."""

# Small and large values: a spec such as "03d" behaves differently on each side of 999.
_SAMPLES: Final = (0, 7, 42, 999, 123_456, 999_999, 10**9)
_FORMATTER: Final = string.Formatter()
# Rendered lengths that keep every header line within RFC 5322's 998 characters
# ("Subject: " and all) and a HELO name within DNS's 255.
_MAX_LENGTH: Final = {"text": 900, "hostname": 255, "address": 254}
# Characters that must not appear in an address sent in MAIL FROM:<...> / RCPT TO:<...>.
_ADDRESS_FORBIDDEN: Final = frozenset(' \t<>()[]\\,;:"')


def template_fields(text: str) -> frozenset[str]:
    """The placeholders ``text`` uses; ``ValueError`` naming the first problem if any."""
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as error:
        raise ValueError(f"bad template {text!r}: {error}") from None
    names: set[str] = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ValueError(
                f"bad template {text!r}: positional placeholders like {{}} are not supported; "
                f"use one of {_known()}"
            )
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} in {text!r}; known: {_known()}")
        if conversion is not None:
            raise ValueError(
                f"bad template {text!r}: conversions like !{conversion} are not supported"
            )
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"bad template {text!r}: nested placeholders in a format spec")
        if spec:
            try:
                format(0, spec)
            except ValueError as error:
                raise ValueError(
                    f"bad format spec {spec!r} for {{{name}}} in {text!r}: {error}"
                ) from None
        names.add(name)
    return frozenset(names)


def check_template(text: str, *, kind: str = "text", utf8: bool = False) -> None:
    """Validate a template of ``kind`` ``"address"``, ``"hostname"`` or ``"text"``.

    Raises ``ValueError`` with a message that says what is wrong (the caller adds
    the key). Text (a subject) must be printable ASCII on one line, since it is
    written into a header as it is; with ``utf8`` (SMTPUTF8 sessions, RFC 6531
    and 6532) addresses and text may be any printable Unicode.
    """
    if not isinstance(text, str):
        raise TypeError(f"a template is a string, got {type(text).__name__}")
    template_fields(text)
    for sample in _SAMPLES:
        rendered = text.format(
            session=sample, message=sample, rcpt=sample, counter=sample, random=sample
        )
        if not (utf8 or rendered.isascii()) or not rendered.isprintable():
            what = "printable text" if utf8 else "printable ASCII"
            hint = "" if utf8 or not rendered.isprintable() else " (or set session.smtputf8)"
            raise ValueError(f"{text!r} must give {what} on one line, got {rendered!r}{hint}")
        if kind not in _MAX_LENGTH:
            raise ValueError(f"unknown template kind {kind!r}")
        if len(rendered.encode("utf-8")) > _MAX_LENGTH[kind]:
            raise ValueError(
                f"{text!r} gives {len(rendered)} characters, more than the "
                f"{_MAX_LENGTH[kind]} a {kind} may have"
            )
        if kind == "address":
            _check_address(text, rendered)
        elif kind == "hostname" and (not rendered or any(ch.isspace() for ch in rendered)):
            raise ValueError(f"{text!r} must give a host name without spaces, got {rendered!r}")


def _check_address(text: str, rendered: str) -> None:
    local, _, domain = rendered.partition("@")
    if rendered.count("@") != 1 or not local or not domain:
        raise ValueError(
            f"{text!r} must give an address with exactly one '@' such as "
            f"user{{counter}}@example.com, got {rendered!r}"
        )
    bad = sorted(set(rendered) & _ADDRESS_FORBIDDEN)
    if bad:
        raise ValueError(f"{text!r} gives {rendered!r}, which has {''.join(bad)!r} in it")


def _known() -> str:
    return ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)


def _positional(text: str) -> str:
    """``text`` (a checked template) with each placeholder as its index in
    ``PLACEHOLDERS``: formatting by position builds no keyword dict, half the cost."""
    out = []
    for literal, name, spec, _conversion in _FORMATTER.parse(text):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            index = PLACEHOLDERS.index(name)
            out.append(f"{{{index}:{spec}}}" if spec else f"{{{index}}}")
    return "".join(out)


class Renderer:
    """One template, compiled, with its own ``{counter}``; made once per message factory.

    A template whose placeholders have no format spec (the defaults, most templates) is
    rendered by joining its literal parts with the numbers written in decimal; one with
    a spec costs a bound ``str.format`` call with the numbers by position. A template
    without placeholders costs nothing. ``{random}`` draws from the factory's seeded
    generator only when the template uses it, so adding it to one template does
    not shift the random sequence of templates that do not. ``per_session``: the
    template gives the same text for every message of a session (it uses ``{session}``
    at most), so a caller may render it once a session.
    """

    __slots__ = (
        "_constant",
        "_first",
        "_format",
        "_head",
        "_middle",
        "_rng",
        "_second",
        "_tail",
        "_uses_random",
        "counter",
        "per_session",
    )

    def __init__(self, text: str, rng: random.Random) -> None:
        fields = template_fields(text)
        # "{{" in a constant template still needs unescaping: format it once.
        self._constant: str | None = None if fields else text.format()
        self._format = _positional(text).format
        self.per_session = fields <= {"session"}
        # Without specs and with one or two placeholders (what the join below is written
        # for): the literal parts around them, and each one's index in PLACEHOLDERS.
        self._first = self._second = -1
        self._head = self._middle = self._tail = ""
        parts = _plain_parts(text)
        if parts is not None and 1 <= len(parts[1]) <= 2:
            literals, places = parts
            self._first = places[0]
            self._head, self._middle = literals[0], literals[1]
            if len(places) == 2:
                self._second = places[1]
                self._tail = literals[2]
        self._uses_random = "random" in fields
        self._rng = rng
        self.counter = 0

    def render(self, session: int, message: int = 0, rcpt: int = 0) -> str:
        counter = self.counter
        self.counter = counter + 1
        if self._constant is not None:
            return self._constant
        value = self._rng.randrange(RANDOM_LIMIT) if self._uses_random else 0
        first = self._first
        if first >= 0:
            # PLACEHOLDERS' order; picked, not indexed out of a tuple made for the purpose.
            one = _pick(first, session, message, rcpt, counter, value)
            second = self._second
            if second < 0:
                return f"{self._head}{one}{self._middle}"
            two = _pick(second, session, message, rcpt, counter, value)
            return f"{self._head}{one}{self._middle}{two}{self._tail}"
        return self._format(session, message, rcpt, counter, value)  # PLACEHOLDERS' order


def _pick(place: int, session: int, message: int, rcpt: int, counter: int, value: int) -> int:
    """The number that placeholder ``place`` (its index in ``PLACEHOLDERS``) stands for."""
    if place == 0:
        return session
    if place == 1:
        return message
    if place == 2:
        return rcpt
    return counter if place == 3 else value


def _plain_parts(text: str) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """A checked template as its literal parts (one more than its placeholders) and each
    placeholder's index in ``PLACEHOLDERS``; None when a placeholder has a format spec."""
    literals = [""]
    places = []
    for literal, name, spec, _conversion in _FORMATTER.parse(text):
        literals[-1] += literal
        if name is None:
            continue
        if spec:
            return None
        places.append(PLACEHOLDERS.index(name))
        literals.append("")
    return tuple(literals), tuple(places)
