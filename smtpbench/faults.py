"""Fault plans for the embedded sink: what goes wrong, at which SMTP step, how often.

A plan is written either as a scenario's ``[sink]`` table or as ``smtpbench sink``
flags, and turns back into either form exactly:

    TOML ([sink] table)                   flag
    ------------------------------------  ---------------------------------
    delay.DATA = "50ms"                   --delay DATA=50ms
    delay.RCPT = "5ms..20ms"              --delay RCPT=5ms..20ms
    reply.RCPT = "451:1%"                 --reply RCPT=451:1%
    reply.MAIL = ["451:1%", "554:0.5%"]   --reply MAIL=451:1% --reply MAIL=554:0.5%
    reply.RCPT = "450 4.7.1:5%"           --reply "RCPT=450 4.7.1:5%"
    disconnect."DATA end" = "0.1%"        --disconnect "DATA end=0.1%"
    garbage.EHLO = "1%"                   --garbage EHLO=1%
    stall.MAIL = "1s@200"                 --stall MAIL=1s@200
    shutdown_after = 1000                 --shutdown-after 1000

The same table (and the same command) also holds how the sink pushes back like a real
server: per-client limits, greylisting, tarpitting... (``smtpbench/pushback.py``), kept
in the plan's ``pushback``.

Steps are written with their label or name (``Step.from_label``); ``banner`` is
the same as ``connect``. What each fault does at a step is the sink's business
(see docs/sink.md); this module only reads, checks and writes plans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from smtpbench.protocol.steps import Step
from smtpbench.pushback import KEYS as PUSHBACK_KEYS
from smtpbench.pushback import NO_PUSHBACK, Pushback, PushbackError, parse_pushback_table
from smtpbench.units import parse_duration, parse_share

KINDS: Final = ("delay", "reply", "disconnect", "garbage", "stall")
# Every key a [sink] table may hold.
SINK_KEYS: Final = (*KINDS, "shutdown_after", *PUSHBACK_KEYS)
# Steps the sink never answers itself cannot carry faults: the TLS handshake is
# the TLS library's, and the banner is the reply to the connect.
_NO_FAULTS: Final = frozenset({Step.TLS})
_STEP_SYNONYMS: Final = {Step.BANNER: Step.CONNECT}


class FaultSpecError(ValueError):
    """A fault that cannot be read; ``key`` says where (``delay.DATA``, ``--reply``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.message))


@dataclass(frozen=True, slots=True)
class Delay:
    """Seconds to wait before replying: fixed when ``low == high``, else uniform between."""

    low: float
    high: float

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def __str__(self) -> str:
        if self.is_fixed:
            return _format_duration(self.low)
        return f"{_format_duration(self.low)}..{_format_duration(self.high)}"


# Texts for injected replies, so that a client's log reads like a real server's.
_REPLY_TEXTS: Final[dict[int, tuple[str, str]]] = {
    421: ("4.3.2", "Service shutting down"),
    450: ("4.2.1", "Mailbox temporarily unavailable"),
    451: ("4.3.0", "Temporary failure"),
    452: ("4.3.1", "Insufficient system storage"),
    454: ("4.7.0", "Temporary authentication failure"),
    500: ("5.5.2", "Syntax error"),
    501: ("5.5.4", "Syntax error in parameters"),
    502: ("5.5.1", "Command not implemented"),
    503: ("5.5.1", "Bad sequence of commands"),
    504: ("5.5.4", "Command parameter not implemented"),
    521: ("5.3.2", "Host does not accept mail"),
    530: ("5.7.0", "Authentication required"),
    535: ("5.7.8", "Authentication credentials invalid"),
    550: ("5.7.1", "Requested action not taken"),
    551: ("5.1.6", "User not local"),
    552: ("5.3.4", "Message size exceeds fixed limit"),
    553: ("5.1.3", "Mailbox name not allowed"),
    554: ("5.0.0", "Transaction failed"),
}
_RCPT_550: Final = ("5.1.1", "Mailbox unavailable")


@dataclass(frozen=True, slots=True)
class ReplyFault:
    """Answer ``code`` instead of the normal reply, with probability ``share``; with
    ``enhanced`` (``"4.7.1"``), that enhanced status code instead of the usual one."""

    code: int
    share: float
    enhanced: str | None = None

    def describe(self, step: Step | None = None) -> tuple[str, str]:
        """The enhanced status code and text to send with ``code`` at ``step``."""
        if self.code == 550 and step is Step.RCPT:
            enhanced, text = _RCPT_550
        else:
            default = ("4.0.0", "Temporary failure") if self.code < 500 else ("5.0.0", "Failure")
            enhanced, text = _REPLY_TEXTS.get(self.code, default)
        return self.enhanced or enhanced, f"{text} injected by smtpbench sink"

    def __str__(self) -> str:
        code = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{code}:{_format_share(self.share)}"


@dataclass(frozen=True, slots=True)
class Stall:
    """The ``occurrence``-th time the sink sees this step (all connections together),
    its reply is held for ``duration`` seconds; once."""

    duration: float
    occurrence: int

    def __str__(self) -> str:
        return f"{_format_duration(self.duration)}@{self.occurrence}"


def _frozen(mapping: Mapping[Step, object] | None) -> Mapping[Step, object]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class FaultPlan:
    """Every fault the sink injects. The empty plan is ``EMPTY_FAULTS``."""

    delays: Mapping[Step, Delay] = field(default_factory=dict)
    replies: Mapping[Step, tuple[ReplyFault, ...]] = field(default_factory=dict)
    disconnects: Mapping[Step, float] = field(default_factory=dict)
    garbage: Mapping[Step, float] = field(default_factory=dict)
    stalls: Mapping[Step, Stall] = field(default_factory=dict)
    # After this many connections, every new connection and the next command of
    # every open one gets 421, and the connection is closed.
    shutdown_after: int | None = None
    # How the sink pushes back like a real server (limits, greylisting...).
    pushback: Pushback = NO_PUSHBACK

    def __post_init__(self) -> None:
        # Read-only views, so a plan shared by all connections cannot drift.
        for name in ("delays", "replies", "disconnects", "garbage", "stalls"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def is_empty(self) -> bool:
        return (
            self.shutdown_after is None
            and self.pushback.is_empty
            and not any((self.delays, self.replies, self.disconnects, self.garbage, self.stalls))
        )

    def steps(self) -> frozenset[Step]:
        """Every step some fault applies to."""
        return frozenset().union(
            self.delays, self.replies, self.disconnects, self.garbage, self.stalls
        )

    def to_table(self) -> dict[str, object]:
        """The ``[sink]`` table that ``parse_fault_table`` reads back to an equal plan."""
        table: dict[str, object] = {}
        sections: list[tuple[str, dict[str, object]]] = [
            ("delay", {s.label: str(d) for s, d in self.delays.items()}),
            ("reply", {s.label: _reply_value(r) for s, r in self.replies.items() if r}),
            ("disconnect", {s.label: _format_share(p) for s, p in self.disconnects.items()}),
            ("garbage", {s.label: _format_share(p) for s, p in self.garbage.items()}),
            ("stall", {s.label: str(st) for s, st in self.stalls.items()}),
        ]
        for name, values in sections:
            if values:
                table[name] = dict(sorted(values.items(), key=lambda kv: Step.from_label(kv[0])))
        if self.shutdown_after is not None:
            table["shutdown_after"] = self.shutdown_after
        table.update(self.pushback.to_table())
        return table

    def to_argv(self) -> list[str]:
        """The ``smtpbench sink`` flags that reproduce this plan."""
        argv: list[str] = []
        for step, delay in sorted(self.delays.items()):
            argv += ["--delay", f"{step.label}={delay}"]
        for step, faults in sorted(self.replies.items()):
            for fault in faults:
                argv += ["--reply", f"{step.label}={fault}"]
        for step, share in sorted(self.disconnects.items()):
            argv += ["--disconnect", f"{step.label}={_format_share(share)}"]
        for step, share in sorted(self.garbage.items()):
            argv += ["--garbage", f"{step.label}={_format_share(share)}"]
        for step, stall in sorted(self.stalls.items()):
            argv += ["--stall", f"{step.label}={stall}"]
        if self.shutdown_after is not None:
            argv += ["--shutdown-after", str(self.shutdown_after)]
        return argv + self.pushback.to_argv()


EMPTY_FAULTS: Final = FaultPlan()


def _reply_value(faults: tuple[ReplyFault, ...]) -> str | list[str]:
    return str(faults[0]) if len(faults) == 1 else [str(fault) for fault in faults]


# -- formatting that reads back to the same float --------------------------------


def _format_duration(seconds: float) -> str:
    candidates = [f"{seconds * 1000:.6g}ms", f"{seconds:.6g}s"] if seconds < 1 else []
    candidates += [f"{seconds:.6g}s", repr(seconds)]
    for text in candidates:
        try:
            if parse_duration(text) == seconds:
                return text
        except ValueError:
            continue
    return repr(seconds)  # a bare number of seconds always reads back exactly


def _format_share(share: float) -> str:
    for text in (f"{share * 100:.6g}%", repr(share)):
        if parse_share(text) == share:
            return text
    return repr(share)


# -- parsing ---------------------------------------------------------------------

_REPLY = re.compile(r"^\s*([0-9]{3})(?:\s+(\S+))?\s*:\s*(\S.*?)\s*$")
# RFC 3463: class (the reply code's first digit), subject and detail of up to 3 digits.
_ENHANCED = re.compile(r"^[245]\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})$")
_STALL = re.compile(r"^\s*(.+?)\s*@\s*([0-9]+)\s*$")


def _step(key: str, text: str) -> Step:
    try:
        step = Step.from_label(text)
    except ValueError as exc:
        raise FaultSpecError(key, str(exc)) from None
    if step in _NO_FAULTS:
        raise FaultSpecError(key, f"the sink cannot inject faults at the {step.label} step")
    return _STEP_SYNONYMS.get(step, step)


def _parse_delay(key: str, value: object) -> Delay:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FaultSpecError(key, f"expected a duration such as 50ms or 5ms..20ms, got {value!r}")
    low_text, sep, high_text = value.partition("..") if isinstance(value, str) else (value, "", "")
    try:
        low = parse_duration(low_text)
        high = parse_duration(high_text) if sep else low
    except ValueError as exc:
        raise FaultSpecError(key, f"{exc} (a delay is 50ms, or 5ms..20ms for a range)") from None
    if high < low:
        raise FaultSpecError(key, f"the range {value!r} ends before it starts")
    return Delay(low, high)


def _parse_share(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FaultSpecError(key, f"expected a share such as 1% or 0.01, got {value!r}")
    try:
        return parse_share(value)
    except ValueError as exc:
        raise FaultSpecError(key, str(exc)) from None


def _parse_reply_fault(key: str, value: object) -> ReplyFault:
    match = _REPLY.match(value) if isinstance(value, str) else None
    if match is None:
        raise FaultSpecError(
            key, f"expected CODE:SHARE such as 451:1% (or 451 4.7.1:1%), got {value!r}"
        )
    code = int(match.group(1))
    if not 400 <= code <= 599:
        raise FaultSpecError(key, f"an injected reply is a 4xx or 5xx code, got {code}")
    enhanced = match.group(2)
    if enhanced is not None and not _ENHANCED.match(enhanced):
        raise FaultSpecError(
            key, f"expected an enhanced status code such as 4.7.1 after {code}, got {enhanced!r}"
        )
    if enhanced is not None and enhanced[0] != str(code)[0]:
        raise FaultSpecError(
            key, f"the enhanced code {enhanced} is of another class than {code} (RFC 3463)"
        )
    return ReplyFault(code, _parse_share(key, match.group(3)), enhanced)


def _parse_replies(key: str, value: object) -> tuple[ReplyFault, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise FaultSpecError(key, "expected at least one CODE:SHARE such as 451:1%")
    faults = tuple(_parse_reply_fault(key, item) for item in values)
    _check_total(key, faults)
    return faults


def _check_total(key: str, faults: Iterable[ReplyFault]) -> None:
    total = sum(fault.share for fault in faults)
    if total > 1.0 + 1e-12:
        raise FaultSpecError(
            key, f"the shares add up to {total:.6g}, over 100%: at most one reply is injected"
        )


def _parse_stall(key: str, value: object) -> Stall:
    match = _STALL.match(value) if isinstance(value, str) else None
    if match is None:
        raise FaultSpecError(key, f"expected DURATION@N such as 1s@200, got {value!r}")
    try:
        duration = parse_duration(match.group(1))
    except ValueError as exc:
        raise FaultSpecError(key, str(exc)) from None
    occurrence = int(match.group(2))
    if occurrence < 1:
        raise FaultSpecError(key, "the occurrence counts from 1 (1s@1 stalls the first one)")
    return Stall(duration, occurrence)


def _parse_shutdown_after(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultSpecError(key, f"expected a number of connections (0 or more), got {value!r}")
    return value


_VALUE_PARSERS: Final = {
    "delay": _parse_delay,
    "reply": _parse_replies,
    "disconnect": _parse_share,
    "garbage": _parse_share,
    "stall": _parse_stall,
}


def parse_fault_table(table: Mapping[str, object], *, ignore: Iterable[str] = ()) -> FaultPlan:
    """A plan from a scenario's ``[sink]`` table; keys in ``ignore`` belong to the caller.

    Errors name the key as written, relative to the table: ``delay.DATA``.
    """
    skip = set(ignore)
    try:
        pushback = parse_pushback_table({k: v for k, v in table.items() if k not in skip})
    except PushbackError as exc:
        raise FaultSpecError(exc.key, exc.message) from None
    skip.update(PUSHBACK_KEYS)
    sections: dict[str, dict[Step, object]] = {kind: {} for kind in KINDS}
    shutdown_after: int | None = None
    for name, value in table.items():
        if name in skip:
            continue
        if name == "shutdown_after":
            shutdown_after = _parse_shutdown_after(name, value)
            continue
        parse = _VALUE_PARSERS.get(name)
        if parse is None:
            known = ", ".join(SINK_KEYS)
            raise FaultSpecError(name, f"unknown fault; expected one of {known}")
        if not isinstance(value, Mapping):
            raise FaultSpecError(
                name, f"expected a table of steps, such as {name}.DATA = ..., got {value!r}"
            )
        section = sections[name]
        for step_text, item in value.items():
            key = f"{name}.{step_text}"
            step = _step(key, str(step_text))
            if step in section:
                raise FaultSpecError(key, f"{step.label} is given twice")
            section[step] = parse(key, item)
    return _plan(sections, shutdown_after, pushback)


def _plan(
    sections: Mapping[str, Mapping[Step, object]],
    shutdown_after: int | None,
    pushback: Pushback = NO_PUSHBACK,
) -> FaultPlan:
    return FaultPlan(
        delays=sections["delay"],  # type: ignore[arg-type]
        replies=sections["reply"],  # type: ignore[arg-type]
        disconnects=sections["disconnect"],  # type: ignore[arg-type]
        garbage=sections["garbage"],  # type: ignore[arg-type]
        stalls=sections["stall"],  # type: ignore[arg-type]
        shutdown_after=shutdown_after,
        pushback=pushback,
    )


FlagValue = Delay | ReplyFault | float | Stall


def parse_fault_flag(kind: str, text: str) -> tuple[Step, FlagValue]:
    """One ``--delay``/``--reply``/``--disconnect``/``--garbage``/``--stall`` value, ``STEP=...``.

    Errors name the flag (``--delay: ...``). ``--reply`` gives one ``ReplyFault``;
    repeat the flag for several at one step (``fault_plan_from_flags`` gathers them).
    """
    key = f"--{kind}"
    if kind not in KINDS:
        raise FaultSpecError(key, f"unknown fault flag; expected one of --{', --'.join(KINDS)}")
    step_text, sep, value = text.rpartition("=")
    if not sep or not step_text.strip():
        raise FaultSpecError(
            key, f"expected STEP=VALUE such as {_FLAG_EXAMPLES[kind]}, got {text!r}"
        )
    step = _step(key, step_text)
    if kind == "reply":
        return step, _parse_reply_fault(key, value)
    return step, _VALUE_PARSERS[kind](key, value)  # type: ignore[operator]


_FLAG_EXAMPLES: Final = {
    "delay": "DATA=50ms",
    "reply": "RCPT=451:1%",
    "disconnect": "'DATA end=0.1%'",
    "garbage": "EHLO=1%",
    "stall": "MAIL=1s@200",
}


def fault_plan_from_flags(
    flags: Iterable[tuple[str, str]], *, shutdown_after: int | None = None
) -> FaultPlan:
    """A plan from ``(kind, "STEP=VALUE")`` pairs in command-line order.

    ``--reply`` may repeat for one step (each adds a fault); the others may not.
    """
    sections: dict[str, dict[Step, object]] = {kind: {} for kind in KINDS}
    for kind, text in flags:
        step, value = parse_fault_flag(kind, text)
        section = sections[kind]
        if kind == "reply":
            faults = (*section.get(step, ()), value)  # type: ignore[misc]
            _check_total("--reply", faults)  # type: ignore[arg-type]
            section[step] = faults
        elif step in section:
            raise FaultSpecError(f"--{kind}", f"{step.label} is given twice")
        else:
            section[step] = value
    if shutdown_after is not None:
        shutdown_after = _parse_shutdown_after("--shutdown-after", shutdown_after)
    return _plan(sections, shutdown_after)
