"""What a run sends, as frozen values: target, load shape, session shape and verdicts.

The models hold meaning only: a value that cannot matter (the rate of a
closed-model run, say) is reset to its default, so that two scenarios that
would run the same compare equal and a scenario written back to TOML reads the
same again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from smtpbench.faults import EMPTY_FAULTS, FaultPlan
from smtpbench.protocol.steps import STEP_COUNT, Step
from smtpbench.scenario.address_lists import AddressList
from smtpbench.scenario.client_identity import NO_CLIENT_IDENTITY, ClientIdentity
from smtpbench.scenario.content_spec import NO_CONTENT, Content
from smtpbench.scenario.delivery import OPEN_DELIVERY, Delivery
from smtpbench.scenario.sizes import IntRange, SizeDistribution
from smtpbench.scenario.templates import check_template
from smtpbench.thresholds import NO_THRESHOLDS, ThresholdSettings

LoadMode = Literal["rate", "concurrency"]
Arrivals = Literal["uniform", "poisson"]
Greeting = Literal["EHLO", "HELO", "LHLO"]
TlsMode = Literal["none", "starttls", "implicit"]
Body = Literal["7bit", "8bitmime"]

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
    Step.XCLIENT: frozenset({220}),  # the new greeting
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


TargetChoice = Literal["round-robin", "weighted", "recipient-domain"]
TARGET_CHOICES: Final[tuple[TargetChoice, ...]] = ("round-robin", "weighted", "recipient-domain")


@dataclass(frozen=True, slots=True)
class TargetHost:
    """One server of several, and its share of the sessions when chosen by weight."""

    host: str
    port: int = 25
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError(f"expected a host name or address, got {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"a port lies between 1 and 65535, got {self.port}")
        if not self.weight > 0 or self.weight == float("inf"):
            raise ValueError(f"a weight is above 0, got {self.weight!r}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where sessions go; ``host=None`` means the embedded sink smtpbench starts itself.

    With ``hosts`` (two or more servers), each session goes to one of them as
    ``choose`` says; ``host`` and ``port`` are then the first's.
    """

    host: str | None = None
    port: int = 25
    # Local addresses to connect from, one per session in turn (``scenario/sources.py``);
    # empty: the system chooses.
    source: tuple[str, ...] = ()
    hosts: tuple[TargetHost, ...] = ()
    choose: TargetChoice = "round-robin"

    def __post_init__(self) -> None:
        if self.hosts:
            if len(self.hosts) < 2:
                raise ValueError("hosts lists two servers or more; one is host and port")
            object.__setattr__(self, "host", self.hosts[0].host)
            object.__setattr__(self, "port", self.hosts[0].port)
        if self.host is not None and (not self.host or any(c.isspace() for c in self.host)):
            raise ValueError(f"expected a host name or address, got {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"a port lies between 1 and 65535, got {self.port}")
        if self.choose not in TARGET_CHOICES:
            raise ValueError(f"choose is one of {', '.join(TARGET_CHOICES)}, got {self.choose!r}")

    @property
    def is_sink(self) -> bool:
        return self.host is None

    def __str__(self) -> str:
        if self.host is None:
            return "embedded sink"
        if self.hosts:
            return f"{', '.join(str(h) for h in self.hosts)} ({self.choose})"
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
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
DSN_NOTIFY: Final = ("SUCCESS", "FAILURE", "DELAY")
# Extension keywords a scenario may insist on with ``session.require``.
REQUIRABLE: Final = (
    "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN", "STARTTLS", "AUTH",
    "ENHANCEDSTATUSCODES", "BINARYMIME", "REQUIRETLS",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Dsn:
    """Delivery status notification parameters (RFC 3461) for every message.

    ``notify`` is empty (no NOTIFY), ``("NEVER",)``, or some of SUCCESS, FAILURE
    and DELAY; ``ret`` is None, ``"FULL"`` or ``"HDRS"``; ``envid`` is a template
    for the envelope id; ``orcpt`` adds each recipient as its own ORCPT.
    """

    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    orcpt: bool = False

    def __post_init__(self) -> None:
        notify = tuple(word.upper() for word in self.notify)
        if "NEVER" in notify and len(notify) > 1:
            raise ValueError("NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY")
        for word in notify:
            if word != "NEVER" and word not in DSN_NOTIFY:
                raise ValueError(
                    f"NOTIFY is NEVER or some of SUCCESS, FAILURE, DELAY; got {word!r}"
                )
        if len(set(notify)) != len(notify):
            raise ValueError(f"NOTIFY lists a word twice: {','.join(notify)}")
        object.__setattr__(self, "notify", notify)
        if self.ret is not None and self.ret.upper() not in ("FULL", "HDRS"):
            raise ValueError(f"RET is FULL or HDRS, got {self.ret!r}")
        if self.ret is not None:
            object.__setattr__(self, "ret", self.ret.upper())
        if self.envid is not None:
            check_template(self.envid, kind="text")

    @property
    def is_empty(self) -> bool:
        return not self.notify and self.ret is None and self.envid is None and not self.orcpt


NO_DSN: Final = Dsn()


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS for every session: ``"starttls"`` after EHLO (RFC 3207), ``"implicit"`` from
    the first byte (port 465 style, RFC 8314), or ``"none"``.

    ``verify`` checks the server's certificate against ``ca_file`` (or the system's
    CAs) and its name against ``sni`` (or the target host); ``client_cert`` (PEM,
    with ``client_key`` when the key is apart) is presented when the server asks.
    """

    mode: TlsMode = "none"
    verify: bool = True
    sni: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("none", "starttls", "implicit"):
            raise ValueError(f"TLS mode is none, starttls or implicit, got {self.mode!r}")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("a client key needs its client certificate")
        if self.sni is not None and (not self.sni or any(c.isspace() for c in self.sni)):
            raise ValueError(f"the TLS server name must be one word, got {self.sni!r}")

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


NO_TLS: Final = Tls()
AUTH_MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
DEFAULT_USERNAME_ENV: Final = "SMTPBENCH_USERNAME"
DEFAULT_PASSWORD_ENV: Final = "SMTPBENCH_PASSWORD"


@dataclass(frozen=True, slots=True)
class Auth:
    """SMTP AUTH (RFC 4954) after EHLO (and after STARTTLS when TLS is on).

    The user name is ``username``, or else the environment variable named by
    ``username_env``; the secret (a password, or an OAuth 2.0 access token for
    XOAUTH2) is ``password``, or else the variable named by ``password_env``.
    A password given in the scenario takes no part in comparisons and is never
    written back out, nor shown: results hold no secret.
    """

    mechanism: str | None = None
    username: str | None = None
    username_env: str = DEFAULT_USERNAME_ENV
    password_env: str = DEFAULT_PASSWORD_ENV
    password: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mechanism is not None:
            if self.mechanism.upper() not in AUTH_MECHANISMS:
                raise ValueError(
                    f"AUTH mechanism is one of {', '.join(AUTH_MECHANISMS)}, got {self.mechanism!r}"
                )
            object.__setattr__(self, "mechanism", self.mechanism.upper())
        for name in ("username_env", "password_env"):
            value = getattr(self, name)
            if not value or not value.replace("_", "a").isalnum():
                raise ValueError(f"{name} names an environment variable, got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.mechanism is not None

    def credentials(self, environ: Mapping[str, str]) -> tuple[str, str]:
        """(user name, secret); ``ValueError`` saying where they were looked for."""
        username = self.username if self.username is not None else environ.get(self.username_env)
        if not username:
            raise ValueError(
                f"AUTH {self.mechanism} needs a user name: set auth.username in the scenario "
                f"or the environment variable {self.username_env}"
            )
        secret = self.password if self.password is not None else environ.get(self.password_env)
        if not secret:
            what = "an access token" if self.mechanism == "XOAUTH2" else "a password"
            raise ValueError(
                f"AUTH {self.mechanism} needs {what}: set the environment variable "
                f"{self.password_env} (or auth.password in the scenario)"
            )
        return username, secret


NO_AUTH: Final = Auth()


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
    pipelining: bool = False  # when the server advertises PIPELINING
    chunking: bool = False  # BDAT instead of DATA; needs CHUNKING
    chunk_size: int = DEFAULT_CHUNK_SIZE
    body: Body = "7bit"  # "8bitmime": UTF-8 text in the body, BODY=8BITMIME
    smtputf8: bool = False  # UTF-8 addresses and headers, SMTPUTF8 on MAIL
    dsn: Dsn = NO_DSN
    require: tuple[str, ...] = ()  # extensions the server must advertise
    # Lists read from files, drawn per message instead of mail_from / rcpt_to.
    senders: AddressList | None = None
    recipients_list: AddressList | None = None

    def __post_init__(self) -> None:
        if self.greeting not in ("EHLO", "HELO", "LHLO"):
            raise ValueError(f"greeting is EHLO, HELO or LHLO, got {self.greeting!r}")
        utf8 = self.smtputf8
        check_template(self.helo_name, kind="hostname")
        check_template(self.mail_from, kind="address", utf8=utf8)
        check_template(self.rcpt_to, kind="address", utf8=utf8)
        check_template(self.subject, kind="text", utf8=utf8)
        if self.body not in ("7bit", "8bitmime"):
            raise ValueError(f"body is 7bit or 8bitmime, got {self.body!r}")
        if isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"a BDAT chunk holds at least 1 byte, got {self.chunk_size!r}")
        require = tuple(word.upper() for word in self.require)
        for word in require:
            if word not in REQUIRABLE:
                raise ValueError(f"unknown extension {word!r}; known: {', '.join(REQUIRABLE)}")
        object.__setattr__(self, "require", require)
        if self.recipients.low < 1:
            raise ValueError("a message needs at least 1 recipient")
        if not 0.0 <= self.noop <= 1.0:
            raise ValueError(f"noop is odds between 0 and 1, got {self.noop!r}")
        if self.greeting == "HELO":
            asked = self.extensions_asked()
            if asked:
                raise ValueError(
                    f"HELO opens a plain SMTP session without extensions, but "
                    f"{', '.join(asked)} {'is' if len(asked) == 1 else 'are'} asked for; "
                    "use EHLO"
                )

    def extensions_asked(self) -> tuple[str, ...]:
        """The extensions the server must advertise for these sessions, in EHLO order."""
        asked = list(self.require)
        for wanted, keyword in (
            (self.body == "8bitmime", "8BITMIME"),
            (self.smtputf8, "SMTPUTF8"),
            (self.chunking, "CHUNKING"),
            (not self.dsn.is_empty, "DSN"),
        ):
            if wanted and keyword not in asked:
                asked.append(keyword)
        return tuple(asked)


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
    tls: Tls = NO_TLS
    auth: Auth = NO_AUTH
    thresholds: ThresholdSettings = NO_THRESHOLDS
    content: Content = NO_CONTENT
    delivery: Delivery = OPEN_DELIVERY
    client: ClientIdentity = NO_CLIENT_IDENTITY

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
        if self.session.greeting == "HELO" and (self.tls.mode == "starttls" or self.auth.enabled):
            raise ValueError("STARTTLS and AUTH are ESMTP extensions: use EHLO, not HELO")

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
