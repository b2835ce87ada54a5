"""Pass/fail thresholds: what they say, parsed from text such as ``p99(DATA) < 250ms``.

A threshold is a metric, a comparison and a value, optionally marked
``optional`` (a trailing word, or ``?`` right after the metric), which lets it
pass when its metric has no data; any other threshold on a metric without data
fails. The forms:

    p99(DATA) < 250ms              service time of a command (p50, p90, p99.9, ...)
    p50(RCPT, service) < 5ms       the same, view named
    p99(message) < 1s              from intended start: message, session, start lag
    mean(DATA end) < 20ms          also min(...) and max(...)
    rate(4xx) < 1%                 share of all replies in a class (2xx..5xx) or one code
    rate(5xx, RCPT) < 0.1%         ... of one command's replies
    rate(4.7.1) < 1%               share of replies with an enhanced status code (RFC 3463)
    rate(5.1.1, RCPT) < 0.5%       ... of one command's replies
    rate(errors) < 0.1%            failed sessions over completed ones
    rate(dropped) == 0             dropped sessions over scheduled ones
    throughput > 800/s             messages accepted per second of the run
    throughput(sessions) > 100/s   sessions started per second
    dropped == 0                   a count: any counter of the run's summary
    p99(AUTH) < 50ms optional      passes when no AUTH was timed at all
    p99(transit) < 5s              run --through: intended start to arrival downstream
    p90(queue) < 1s                ... the server's 250 to arrival (p50, p90, p99 kept)
    max(transit) < 30s             ... the slowest message that arrived
    not_arrived == 0               ... also arrived, duplicates, altered

This module only parses and describes (standard library, protocol steps and
units); ``smtpbench.report.thresholds`` measures them on a run's snapshot.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.units import format_duration, parse_duration, parse_rate, parse_share


class ThresholdError(ValueError):
    """A threshold that cannot be understood; the message quotes it and says why."""


class Kind(Enum):
    LATENCY = "latency"  # seconds
    SHARE = "share"  # a fraction between 0 and 1
    THROUGHPUT = "throughput"  # per second
    COUNT = "count"  # a whole number


# Latency rows past the steps, as metrics.kinds numbers them (kept in step with it).
START_LAG_ROW: Final = STEP_COUNT
MESSAGE_ROW: Final = STEP_COUNT + 1
SESSION_ROW: Final = STEP_COUNT + 2
_INTENDED_ROWS: Final = {
    "start lag": START_LAG_ROW,
    "start_lag": START_LAG_ROW,
    "lag": START_LAG_ROW,
    "message": MESSAGE_ROW,
    "messages": MESSAGE_ROW,
    "session": SESSION_ROW,
    "sessions": SESSION_ROW,
}
_ROW_LABELS: Final = {START_LAG_ROW: "start lag", MESSAGE_ROW: "message", SESSION_ROW: "session"}
SERVICE: Final = "service"
INTENDED: Final = "from intended start"
_VIEWS: Final = {
    "service": SERVICE,
    "intended": INTENDED,
    "from intended start": INTENDED,
    "intended start": INTENDED,
}
COUNTERS: Final = (
    "scheduled",
    "started",
    "completed",
    "failed",
    "dropped",
    "messages_accepted",
    "messages_rejected",
    "messages_aborted",
    "recipients_accepted",
    "recipients_rejected",
    "bytes_sent",
)
_MORE_IS_BETTER: Final = (
    "scheduled",
    "started",
    "completed",
    "messages_accepted",
    "recipients_accepted",
    "bytes_sent",
)
_AGGREGATES: Final = ("mean", "min", "max")
# run --through (transit.matching): the latencies and percentiles kept, and the counts.
TRANSIT_PERCENTILES: Final = (50.0, 90.0, 99.0)
TRANSIT_LATENCIES: Final = {
    "transit": "intended start to arrival downstream, of messages that arrived (--through)",
    "queue": "the server's 250 to arrival downstream: its queue and relay (--through)",
}
TRANSIT_COUNTS: Final = {
    "arrived": "accepted messages that arrived downstream (--through)",
    "not_arrived": "accepted messages that never arrived downstream (--through)",
    "duplicates": "arrivals of a message already brought to all its recipients (--through)",
    "altered": "arrivals whose body differs from what was sent (--through)",
}
_STEP_MEANINGS: Final = {
    Step.CONNECT: "TCP connect",
    Step.BANNER: "connect to the server's greeting",
    Step.DATA: "the DATA command's 354 go-ahead, not the message's acceptance (DATA end)",
    Step.DATA_END: "the message's acceptance: final dot to the server's reply",
    Step.TLS: "the TLS handshake",
    Step.AUTH: "the whole AUTH exchange",
}
_INTENDED_MEANINGS: Final = {
    START_LAG_ROW: "intended to actual start of a session",
    MESSAGE_ROW: "intended start to each message's final reply",
    SESSION_ROW: "intended start to the end of a session",
}
_RATE_MEANINGS: Final = {
    "errors": "failed sessions over those that ended on their own",
    "dropped": "dropped sessions over scheduled ones",
}
_COUNTER_MEANINGS: Final = {
    "scheduled": "sessions the schedule asked for",
    "started": "sessions started",
    "completed": "sessions that ended, whatever the outcome",
    "failed": "sessions that ended with an error or a reply not counted as success",
    "dropped": "sessions due but never started: the backlog was full",
    "messages_accepted": "messages the server accepted",
    "messages_rejected": "messages refused, at the end of data or before it",
    "messages_aborted": "messages cut short by a broken connection",
    "recipients_accepted": "RCPT commands accepted",
    "recipients_rejected": "RCPT commands refused",
    "bytes_sent": "bytes sent to the server, commands and content",
}
REPLY_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx")


def row_label(row: int) -> str:
    return Step(row).label if row < STEP_COUNT else _ROW_LABELS[row]


def parse_latency_row(text: str) -> int:
    """A latency row from a step label (``DATA end``) or ``message``, ``session``,
    ``start lag``."""
    key = text.strip().lower()
    if key in _INTENDED_ROWS:
        return _INTENDED_ROWS[key]
    try:
        return int(Step.from_label(text))
    except ValueError:
        known = ", ".join([*(s.label for s in Step), "message", "session", "start lag"])
        raise ThresholdError(
            f"unknown command or measure {text.strip()!r}; known: {known}"
        ) from None


@dataclass(frozen=True, slots=True)
class Metric:
    """What a threshold measures. ``name`` is ``percentile``, ``mean``, ``min``, ``max``,
    ``rate``, ``throughput`` or a counter name."""

    name: str
    row: int | None = None  # latency row (a Step, or START_LAG_ROW..SESSION_ROW)
    q: float | None = None  # percentile
    subject: str | None = None  # rate: "4xx", "421", "4.7.1", "errors", "dropped"; throughput
    step: Step | None = None  # rate of one command's replies

    @property
    def is_transit(self) -> bool:
        """Measured on the transit figures of a run with ``--through``, not its snapshot."""
        return self.name in TRANSIT_COUNTS or (
            self.row is None and self.subject in TRANSIT_LATENCIES
        )

    @property
    def kind(self) -> Kind:
        if self.row is not None or (self.is_transit and self.name not in TRANSIT_COUNTS):
            return Kind.LATENCY
        if self.name == "rate":
            return Kind.SHARE
        if self.name == "throughput":
            return Kind.THROUGHPUT
        return Kind.COUNT

    @property
    def view(self) -> str | None:
        if self.row is None:
            return None
        return SERVICE if self.row < STEP_COUNT else INTENDED

    @property
    def higher_is_better(self) -> bool:
        """For comparisons: more throughput or more accepted is better, less of the rest."""
        if self.kind is Kind.THROUGHPUT:
            return True
        if self.kind is Kind.SHARE:
            return self.subject == "2xx"
        if self.kind is Kind.COUNT:
            return self.name in _MORE_IS_BETTER or self.name == "arrived"
        return False

    @property
    def meaning(self) -> str:
        """What the figure is, in a mail admin's words; DATA is said apart from DATA end,
        since people who write p99(DATA) usually mean the message's acceptance."""
        if self.name == "rate":
            where = f"{self.step.label} replies" if self.step is not None else "all replies"
            if self.is_enhanced:
                return f"share of {where} with enhanced code {self.subject}"
            return _RATE_MEANINGS.get(self.subject or "", f"share of {where}")
        if self.name in TRANSIT_COUNTS:
            return TRANSIT_COUNTS[self.name]
        if self.is_transit:
            return TRANSIT_LATENCIES[self.subject or ""]
        if self.name == "throughput":
            what = "messages accepted" if self.subject == "messages" else "sessions started"
            return f"{what} per second over the whole run"
        if self.row is None:
            return _COUNTER_MEANINGS.get(self.name, "")
        if self.row < STEP_COUNT:
            return _STEP_MEANINGS.get(self.row, f"{row_label(self.row)}: sent to reply")
        return _INTENDED_MEANINGS[self.row]

    @property
    def is_enhanced(self) -> bool:
        """A rate of replies with an enhanced status code (``4.7.1``), not a basic one."""
        return self.name == "rate" and ENHANCED_CODE.match(self.subject or "") is not None

    def __str__(self) -> str:
        if self.row is not None or (self.is_transit and self.name not in TRANSIT_COUNTS):
            head = f"p{self.q:g}" if self.name == "percentile" else self.name
            of = row_label(self.row) if self.row is not None else self.subject
            return f"{head}({of})"
        if self.name == "rate":
            where = f", {self.step.label}" if self.step is not None else ""
            return f"rate({self.subject}{where})"
        if self.name == "throughput":
            return "throughput" if self.subject == "messages" else f"throughput({self.subject})"
        return self.name


_OPERATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_SPLIT: Final = re.compile(r"^(?P<metric>.*?)\s*(?P<op><=|>=|==|!=|<|>|=)\s*(?P<value>.*)$")
_PERCENTILE: Final = re.compile(r"^p\(?\s*(\d+(?:\.\d+)?)\s*\)?$", re.IGNORECASE)
_CALL: Final = re.compile(r"^(?P<head>[A-Za-z0-9_.()]+?)\s*\((?P<args>[^()]*)\)$")
_CODE: Final = re.compile(r"^[2-5]\d\d$")
# RFC 3463: class (2, 4 or 5), subject and detail of up to three digits each.
ENHANCED_CODE: Final = re.compile(r"^[245]\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})$")
_DOTTED: Final = re.compile(r"^\d+(?:\.\d+)+$")
EXAMPLES: Final = "p99(DATA end) < 250ms, rate(4xx) < 1%, throughput > 800/s or dropped == 0"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A parsed threshold; ``text`` is how it was written (shown, and written back)."""

    metric: Metric
    op: str
    value: float
    optional: bool = False
    text: str = field(default="", compare=False)

    def passes(self, measured: float) -> bool:
        return _OPERATORS[self.op](measured, self.value)

    def __str__(self) -> str:
        return self.text or f"{self.metric} {self.op} {format_value(self.metric.kind, self.value)}"

    @property
    def final_when_failing(self) -> bool:
        """Whether failing part-way through a run means it cannot pass at the end.

        Counts only grow, so a count over its upper bound stays over it, while a
        count under a lower bound may still get there; percentiles, rates and
        throughput can go either way, and are judged as they stand.
        """
        if self.metric.kind is not Kind.COUNT:
            return True
        return self.op in ("<", "<=", "==")


def parse_threshold(text: str) -> Threshold:
    """A threshold from its text; raises ``ThresholdError`` saying what is wrong."""
    if not isinstance(text, str):
        raise ThresholdError(f"expected a threshold such as {EXAMPLES}, got {text!r}")
    written = " ".join(text.split())
    body = written
    optional = False
    if body.lower().endswith(" optional"):
        body, optional = body[: -len(" optional")].rstrip(), True
    match = _SPLIT.match(body)
    if match is None or not match.group("metric"):
        raise ThresholdError(f"{written!r}: expected METRIC OPERATOR VALUE, such as {EXAMPLES}")
    if match.group("op") == "=":
        raise ThresholdError(f"{written!r}: '=' is not a comparison; did you mean '=='?")
    metric_text = match.group("metric").strip()
    if metric_text.endswith("?"):
        metric_text, optional = metric_text[:-1].rstrip(), True
    try:
        metric = parse_metric(metric_text)
        value = parse_value(metric.kind, match.group("value"))
    except ThresholdError as error:
        raise ThresholdError(f"{written!r}: {error}") from None
    return Threshold(metric, match.group("op"), value, optional, written)


def parse_thresholds(texts: Iterable[str]) -> tuple[Threshold, ...]:
    return tuple(parse_threshold(text) for text in texts)


def parse_metric(text: str) -> Metric:
    """A metric alone: ``p99(DATA)``, ``rate(4xx)``, ``throughput``, ``dropped`` ..."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("throughput", "messages/s"):
        return Metric("throughput", subject="messages")
    if lowered == "sessions/s":
        return Metric("throughput", subject="sessions")
    counter = lowered.replace(" ", "_")
    if counter in COUNTERS or counter in TRANSIT_COUNTS:
        return Metric(counter)
    call = _CALL.match(text)
    if call is None:
        if _PERCENTILE.match(text) or lowered in _AGGREGATES:
            raise ThresholdError(f"{text} of what? Name a command, such as {text}(DATA)")
        raise ThresholdError(f"unknown metric {text!r}; expected such as {EXAMPLES}")
    head = call.group("head").strip()
    args = [arg.strip() for arg in call.group("args").split(",")]
    if head.lower() == "rate":
        return _rate(args)
    if head.lower() == "throughput":
        if len(args) != 1 or args[0].lower() not in ("messages", "sessions"):
            raise ThresholdError("throughput counts messages or sessions: throughput(sessions)")
        return Metric("throughput", subject=args[0].lower())
    percentile = _PERCENTILE.match(head)
    transit = args[0].lower() if len(args) == 1 and args[0].lower() in TRANSIT_LATENCIES else None
    if percentile is not None:
        q = float(percentile.group(1))
        if not 0 < q <= 100:
            raise ThresholdError(f"a percentile lies above 0 and up to 100, got {head}")
        if transit is not None:
            if q not in TRANSIT_PERCENTILES:
                kept = ", ".join(f"p{k:g}" for k in TRANSIT_PERCENTILES)
                raise ThresholdError(f"{transit} keeps {kept} only, not {head}")
            return Metric("percentile", q=q, subject=transit)
        return Metric("percentile", row=_row(args), q=q)
    if head.lower() in _AGGREGATES:
        if transit is not None:
            if (head.lower(), transit) != ("max", "transit"):
                raise ThresholdError(
                    f"{head.lower()}({transit}) is not kept: p50, p90, p99 of transit and "
                    "queue, and max(transit)"
                )
            return Metric("max", subject=transit)
        return Metric(head.lower(), row=_row(args))
    raise ThresholdError(
        f"unknown metric {head!r}; expected p50, p99, p99.9, mean, min, max, rate or throughput"
    )


def _row(args: list[str]) -> int:
    if not args[0]:
        raise ThresholdError("name a command or measure, such as DATA or message")
    if len(args) > 2:
        raise ThresholdError(f"expected (COMMAND) or (COMMAND, VIEW), got {len(args)} arguments")
    row = parse_latency_row(args[0])
    if len(args) == 2:
        view = _VIEWS.get(args[1].lower())
        if view is None:
            raise ThresholdError(
                f"unknown view {args[1]!r}: 'service' (commands) or 'intended' "
                "(message, session, start lag)"
            )
        have = SERVICE if row < STEP_COUNT else INTENDED
        if view != have and view == INTENDED:
            raise ThresholdError(
                f"{row_label(row)} is a command, timed as service time; "
                "message, session and start lag are measured from intended start"
            )
        if view != have:
            raise ThresholdError(
                f"{row_label(row)} is measured from intended start; "
                "only commands have a service time"
            )
    return row


def _rate(args: list[str]) -> Metric:
    subject = args[0].lower()
    if len(args) > 2:
        raise ThresholdError("expected rate(WHAT) or rate(CODES, COMMAND)")
    step = None
    if len(args) == 2:
        if subject in ("errors", "dropped"):
            raise ThresholdError(f"rate({subject}) is over whole sessions, not one command")
        try:
            step = Step.from_label(args[1])
        except ValueError as error:
            raise ThresholdError(str(error)) from None
    if subject in ("errors", "dropped") or subject in REPLY_CLASSES or _CODE.match(subject):
        return Metric("rate", subject=subject, step=step)
    if ENHANCED_CODE.match(subject):
        return Metric("rate", subject=subject, step=step)
    if _DOTTED.match(subject):
        raise ThresholdError(
            f"rate of {args[0]!r}: an enhanced status code is CLASS.SUBJECT.DETAIL "
            "(RFC 3463), its class 2, 4 or 5, such as 4.7.1 or 5.1.1"
        )
    raise ThresholdError(
        f"rate of {args[0]!r}: expected a reply class (2xx, 3xx, 4xx, 5xx), a reply code "
        "such as 421, errors (failed sessions) or dropped (dropped sessions); or an "
        "enhanced status code such as 4.7.1"
    )


def parse_value(kind: Kind, text: str) -> float:
    text = text.strip()
    if not text:
        raise ThresholdError("the value to compare with is missing")
    try:
        if kind is Kind.LATENCY:
            if re.fullmatch(r"[0-9.eE+-]+", text):
                raise ThresholdError(f"{text} has no unit: write {text}ms or {text}s")
            value = parse_duration(text)
        elif kind is Kind.SHARE:
            value = parse_share(text)
        elif kind is Kind.THROUGHPUT:
            value = parse_rate(text)
        else:
            if not re.fullmatch(r"\d+", text):
                raise ThresholdError(f"expected a whole number, got {text!r}")
            value = float(int(text))
    except ThresholdError:
        raise
    except ValueError as error:
        raise ThresholdError(str(error)) from None
    if not math.isfinite(value):
        raise ThresholdError(f"expected a finite value, got {text!r}")
    return value


def format_value(kind: Kind, value: float | None) -> str:
    """A measured or limit value for people: ``4.20ms``, ``0.35%``, ``812.4/s``, ``12``."""
    if value is None or value != value:
        return "no data"
    if kind is Kind.LATENCY:
        return format_duration(value)
    if kind is Kind.SHARE:
        return f"{value * 100:.3g}%"
    if kind is Kind.THROUGHPUT:
        return f"{value:,.1f}/s"
    return f"{int(value):,}"


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    """A run's thresholds, and whether a failing one stops the run early.

    With ``abort_on_fail``, thresholds are also checked every second while the
    run goes on, from ``abort_grace`` seconds after the start; the first one
    that fails with data stops the run (sessions in flight get the scenario's
    grace period), and the exit code says so.
    """

    checks: tuple[Threshold, ...] = ()
    abort_on_fail: bool = False
    abort_grace: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.abort_grace) and self.abort_grace >= 0):
            raise ValueError(f"abort_grace must be 0 or more seconds, got {self.abort_grace!r}")
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "abort_grace", float(self.abort_grace))

    def with_checks(self, extra: Iterable[Threshold]) -> ThresholdSettings:
        return ThresholdSettings((*self.checks, *extra), self.abort_on_fail, self.abort_grace)


NO_THRESHOLDS: Final = ThresholdSettings()
