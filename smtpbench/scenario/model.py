"""What a run sends, as frozen values: target, load shape, session shape and verdicts.

The models hold meaning only: a value that cannot matter (the rate of a
closed-model run, say) is reset to its default, so that two scenarios that
would run the same compare equal and a scenario written back to TOML reads the
same again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from smtpbench.faults import EMPTY_FAULTS, FaultPlan
from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.scenario.sizes import IntRange, SizeDistribution
from smtpbench.scenario.templates import check_template
from smtpbench.thresholds import NO_THRESHOLDS, ThresholdSettings

LoadMode = Literal["rate", "concurrency"]
Arrivals = Literal["uniform", "poisson"]
Greeting = Literal["EHLO", "HELO"]

# Steps that are not answered by a reply: success codes make no sense there.
NO_REPLY_STEPS: Final = frozenset({Step.CONNECT, Step.TLS})

_DEFAULT_SUCCESS: Final[dict[Step, frozenset[int]]] = {
    Step.BANNER: frozenset({220}),
    Step.HELO: frozenset({250}),
    Step.EHLO: frozenset({250}),
    Step.LHLO: frozenset({250}),
    Step.STARTTLS: frozenset({220}),
    Step.AUTH: frozenset({235}),
    Step.MAIL: frozenset({250}),
    Step.RCPT: frozenset({250, 251}),
    Step.DATA: frozenset({354}),
    Step.DATA_END: frozenset({250}),
    Step.BDAT: frozenset({250}),
    Step.RSET: frozenset({250}),
    Step.NOOP: frozenset({250}),
    Step.VRFY: frozenset({250, 251, 252}),
    Step.EXPN: frozenset({250}),
    Step.QUIT: frozenset({221}),
}
DEFAULT_SUCCESS: Final[tuple[frozenset[int], ...]] = tuple(
    _DEFAULT_SUCCESS.get(step, frozenset()) for step in Step
)

# RFC 5321 section 4.5.3.2 gives the client's minimum waits: 5 minutes for the
# banner, MAIL and RCPT, 2 minutes for the DATA 354, 10 minutes for the reply to
# the final dot ("DATA termination"); BDAT carries the end of data like the dot.
# The RFC says nothing of connecting or of the TLS handshake: 30 seconds is what
# a load tester can afford to wait for a peer that is not answering at all.
_MINUTE = 60.0
_DEFAULT_TIMEOUTS: Final[dict[Step, float]] = {
    Step.CONNECT: 30.0,
    Step.TLS: 30.0,
    Step.BANNER: 5 * _MINUTE,
    Step.MAIL: 5 * _MINUTE,
    Step.RCPT: 5 * _MINUTE,
    Step.DATA: 2 * _MINUTE,
    Step.DATA_END: 10 * _MINUTE,
    Step.BDAT: 10 * _MINUTE,
}
DEFAULT_TIMEOUTS: Final[tuple[float, ...]] = tuple(
    _DEFAULT_TIMEOUTS.get(step, 5 * _MINUTE) for step in Step
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where sessions go; ``host=None`` means the embedded sink smtpbench starts itself."""

    host: str | None = None
    port: int = 25

    def __post_init__(self) -> None:
        if self.host is not None and (not self.host or any(c.isspace() for c in self.host)):
            raise ValueError(f"expected a host name or address, got {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"a port lies between 1 and 65535, got {self.port}")

    @property
    def is_sink(self) -> bool:
        return self.host is None

    def __str__(self) -> str:
        if self.host is None:
            return "embedded sink"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Stage:
    """``duration`` seconds at the end of which the rate is ``rate`` sessions/s.

    The rate moves linearly from the previous stage's end rate (or
    ``Load.start_rate``), so a stage with the same rate as the one before holds it.
    """

    duration: float
    rate: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"a stage lasts more than 0 seconds, got {self.duration!r}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"a stage rate is a non-negative number, got {self.rate!r}")
        object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "rate", float(self.rate))


@dataclass(frozen=True, slots=True)
class Load:
    """How sessions are started, and when the run ends.

    ``mode="rate"`` is the open model: sessions arrive at ``rate`` per second
    (or along ``stages``) whether or not the server keeps up, which is how real
    traffic behaves and what shows queueing; ``max_concurrency`` caps the sessions
    in flight and up to ``backlog`` late sessions wait for a slot, the rest are
    dropped (and counted). ``mode="concurrency"`` is the closed model:
    ``concurrency`` sessions are kept in flight, each started when one ends.

    With ``stages``, ``rate`` is the last stage's rate (held from the end of
    the ramps until the end of the run) and ``duration`` defaults to the sum of
    the stages. Without them, ``start_rate`` is unused and kept at 0.

    The run ends at ``duration`` or after ``sessions`` sessions, whichever
    comes first; then in-flight sessions get ``grace`` seconds.
    """

    mode: LoadMode = "rate"
    rate: float = 20.0
    start_rate: float = 0.0
    stages: tuple[Stage, ...] = ()
    arrivals: Arrivals = "uniform"
    concurrency: int = 10
    duration: float | None = 20.0
    sessions: int | None = None
    max_concurrency: int = 1000
    backlog: int = 10000
    grace: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in ("rate", "concurrency"):
            raise ValueError(f"mode is 'rate' or 'concurrency', got {self.mode!r}")
        if self.arrivals not in ("uniform", "poisson"):
            raise ValueError(f"arrivals are 'uniform' or 'poisson', got {self.arrivals!r}")
        _check_number("rate", self.rate, positive=not self.stages and self.mode == "rate")
        _check_number("start_rate", self.start_rate)
        _check_number("grace", self.grace)
        if self.duration is not None:
            _check_number("duration", self.duration, positive=True)
        # Floats throughout, so that Load(rate=5) and Load(rate=5.0) look alike too.
        for name in ("rate", "start_rate", "grace", "duration"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        for name, count, least in (
            ("concurrency", self.concurrency, 1),
            ("max_concurrency", self.max_concurrency, 1),
            ("backlog", self.backlog, 0),
            ("sessions", self.sessions, 1),
        ):
            if count is not None and (isinstance(count, bool) or count < least):
                raise ValueError(f"{name} must be at least {least}, got {count!r}")
        if self.mode == "concurrency":
            # The open model's knobs cannot matter: keep their defaults (see module doc).
            for name, value in _OPEN_MODEL_DEFAULTS.items():
                object.__setattr__(self, name, value)
        else:
            object.__setattr__(self, "concurrency", _CONCURRENCY_DEFAULT)
        if self.stages:
            if self.start_rate == 0 and not any(stage.rate for stage in self.stages):
                raise ValueError("every stage has rate 0, so no session would start")
            object.__setattr__(self, "rate", self.stages[-1].rate)
            object.__setattr__(self, "stages", tuple(self.stages))
            if self.duration is None:
                object.__setattr__(self, "duration", self.ramp_duration)
        else:
            object.__setattr__(self, "start_rate", 0.0)
        if self.duration is None and self.sessions is None:
            raise ValueError("a run needs an end: set duration, sessions or both")

    @property
    def ramp_duration(self) -> float:
        """The seconds the stages take together (0 without stages)."""
        return math.fsum(stage.duration for stage in self.stages)

    def rate_at(self, elapsed: float) -> float:
        """The open model's arrival rate (sessions/s) ``elapsed`` seconds into the run."""
        if not self.stages:
            return self.rate
        begin, previous = 0.0, self.start_rate
        for stage in self.stages:
            end = begin + stage.duration
            if elapsed < end:
                return previous + (stage.rate - previous) * (elapsed - begin) / stage.duration
            begin, previous = end, stage.rate
        return self.rate


# Written out because slotted dataclasses keep no class-level defaults to read back.
_OPEN_MODEL_DEFAULTS: Final[dict[str, object]] = {
    "rate": 20.0,
    "start_rate": 0.0,
    "stages": (),
    "arrivals": "uniform",
    "max_concurrency": 1000,
    "backlog": 10000,
}
_CONCURRENCY_DEFAULT: Final = 10


def _check_number(name: str, value: float, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'above' if positive else 'at least'} 0, got {value!r}")


_ONE: Final = IntRange(1, 1)
DEFAULT_SIZE: Final = SizeDistribution.fixed(2048)


@dataclass(frozen=True, slots=True)
class Session:
    """What one SMTP connection does: greet, then ``messages`` transactions, then QUIT.

    Addresses, the HELO name and the subject are templates (see
    ``smtpbench.scenario.templates``).
    """

    greeting: Greeting = "EHLO"
    helo_name: str = "smtpbench.localhost"
    messages: IntRange = _ONE
    recipients: IntRange = _ONE
    mail_from: str = "sender{session}@smtpbench.test"
    rcpt_to: str = "user{counter}@smtpbench.test"
    size: SizeDistribution = DEFAULT_SIZE
    subject: str = "smtpbench test {session}.{message}"
    rset_between_messages: bool = False
    noop: float = 0.0

    def __post_init__(self) -> None:
        if self.greeting not in ("EHLO", "HELO"):
            raise ValueError(f"greeting is EHLO or HELO, got {self.greeting!r}")
        check_template(self.helo_name, kind="hostname")
        check_template(self.mail_from, kind="address")
        check_template(self.rcpt_to, kind="address")
        check_template(self.subject, kind="text")
        if self.recipients.low < 1:
            raise ValueError("a message needs at least 1 recipient")
        if not 0.0 <= self.noop <= 1.0:
            raise ValueError(f"noop is odds between 0 and 1, got {self.noop!r}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A complete description of a run: where, how much, what, and what counts as success.

    ``success`` and ``timeouts`` are indexed by ``Step``. ``sink`` holds the
    faults the embedded sink injects, so it is empty when ``target`` names a
    host. ``source`` is the file the scenario was read from; it does not take
    part in comparisons. ``thresholds`` are the run's pass/fail criteria.
    """

    name: str
    description: str = ""
    source: str | None = field(default=None, compare=False)
    seed: int | None = None
    target: Target = Target()
    load: Load = Load()
    session: Session = Session()
    success: tuple[frozenset[int], ...] = DEFAULT_SUCCESS
    timeouts: tuple[float, ...] = DEFAULT_TIMEOUTS
    sink: FaultPlan = EMPTY_FAULTS
    thresholds: ThresholdSettings = NO_THRESHOLDS

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise ValueError(f"a scenario needs a name on one line, got {self.name!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or self.seed < 0):
            raise ValueError(f"a seed is a non-negative integer, got {self.seed!r}")
        if len(self.success) != STEP_COUNT or len(self.timeouts) != STEP_COUNT:
            raise ValueError(f"success and timeouts need one entry per step ({STEP_COUNT})")
        for step in Step:
            if step in NO_REPLY_STEPS and self.success[step]:
                raise ValueError(f"{step.label} has no reply, so no success codes")
            if step not in NO_REPLY_STEPS and not self.success[step]:
                raise ValueError(f"{step.label} needs at least one success code")
        for step in Step:
            if not (math.isfinite(self.timeouts[step]) and self.timeouts[step] > 0):
                raise ValueError(f"the {step.label} timeout must be above 0")
        if not self.sink.is_empty and not self.target.is_sink:
            raise ValueError(
                f"sink faults apply to the embedded sink, but the target is {self.target}"
            )

    def is_success(self, step: Step, code: int) -> bool:
        return code in self.success[step]

    def timeout(self, step: Step) -> float:
        return self.timeouts[step]

    def with_success(self, step: Step, codes: frozenset[int]) -> Scenario:
        success = list(self.success)
        success[step] = frozenset(codes)
        return replace(self, success=tuple(success))


def default_scenario() -> Scenario:
    """What ``smtpbench run`` does with no scenario named; scenarios/default.toml says the same."""
    return Scenario(name="default", description=DEFAULT_DESCRIPTION)


DEFAULT_DESCRIPTION: Final = (
    "20 sessions/s for 20 s against the embedded sink: one 2 KiB message to one recipient each"
)
