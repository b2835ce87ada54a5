"""How the sink pushes back like a real server: per-client limits, greylisting, tarpitting,
a session limit, a throttled link, ESMTP extensions switched off, and a maildir to keep
what it received.

These are settings, written either in a scenario's ``[sink]`` table (beside the faults)
or as ``smtpbench sink`` flags; ``OPTIONS`` below is the one place that defines both
forms, and each turns back into either exactly:

    TOML ([sink] table)                   flag
    ------------------------------------  ---------------------------------------
    client_connection_limit = 5           --client-connection-limit 5
    client_connection_rate = "30/min"     --client-connection-rate 30/min
    client_message_rate = "100/min"       --client-message-rate 100/min
    greylist = "5m"                       --greylist 5m
    tarpit_after = 10                     --tarpit-after 10
    tarpit_delay = "1s"                   --tarpit-delay 1s
    max_sessions = 100                    --max-sessions 100
    throttle = "64KiB/s"                  --throttle 64KiB/s
    no_extension = ["PIPELINING", "DSN"]  --no-extension PIPELINING --no-extension DSN
    maildir = "received"                  --maildir received
    maildir_limit = 1000                  --maildir-limit 1000
    proxy_protocol = "haproxy"            --proxy-protocol haproxy

Each option's help names the Postfix parameter (or postgrey's) it mimics.

What the sink does with them is in ``servers/sink_pushback.py`` and docs/sink.md; this
module only reads, checks and writes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from smtpbench.units import parse_duration, parse_size

# EHLO keywords that can be switched off, as the sink advertises them.
EXTENSIONS: Final = (
    "SIZE",
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH",
    "STARTTLS",
)
DEFAULT_TARPIT_DELAY: Final = 1.0  # smtpd_error_sleep_time's default
DEFAULT_MAILDIR_LIMIT: Final = 1000
_WINDOWS: Final = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_WINDOW_NAMES: Final = {1.0: "s", 60.0: "min", 3600.0: "h"}
_RATE: Final = re.compile(r"^\s*([0-9]+)\s*(?:/\s*([a-z]+))?\s*$", re.IGNORECASE)


class PushbackError(ValueError):
    """A setting that cannot be read; ``key`` names it as written (``greylist``,
    ``--greylist``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.message))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` events per ``window`` seconds (a window opens with a client's
    first event and lasts ``window`` seconds, as Postfix's anvil counts)."""

    count: int
    window: float

    def __str__(self) -> str:
        return f"{self.count}/{_WINDOW_NAMES.get(self.window, 'min')}"


@dataclass(frozen=True)
class Pushback:
    """Every way the sink pushes back; the default pushes back in none."""

    client_connection_limit: int | None = None  # connections at once from one address
    client_connection_rate: RateLimit | None = None  # connection attempts per window
    client_message_rate: RateLimit | None = None  # MAIL FROM per window
    greylist: float | None = None  # seconds a (client, sender, recipient) is deferred
    tarpit_after: int | None = None  # error replies in a session before each reply waits
    tarpit_delay: float = DEFAULT_TARPIT_DELAY
    max_sessions: int | None = None  # sessions served at once, all clients together
    throttle: int | None = None  # bytes per second read from each connection
    no_extension: tuple[str, ...] = ()  # EHLO keywords switched off (upper case)
    maildir: str | None = None  # write accepted messages here
    maildir_limit: int = DEFAULT_MAILDIR_LIMIT  # messages written at most
    proxy_protocol: str | None = None  # "haproxy": a PROXY header (v1 or v2) comes first

    @property
    def is_empty(self) -> bool:
        return self == NO_PUSHBACK

    def has(self, extension: str) -> bool:
        """Whether EHLO keyword ``extension`` is still on."""
        return extension not in self.no_extension

    def to_table(self) -> dict[str, object]:
        """The ``[sink]`` keys that ``parse_pushback_table`` reads back to equal settings."""
        table: dict[str, object] = {}
        for option in OPTIONS:
            value = getattr(self, option.key)
            if value != option.default:
                table[option.key] = option.to_toml(value)
        return table

    def to_argv(self) -> list[str]:
        """The ``smtpbench sink`` flags that reproduce these settings."""
        argv: list[str] = []
        for option in OPTIONS:
            value = getattr(self, option.key)
            if value == option.default:
                continue
            if option.repeat:
                for item in value:
                    argv += [option.flag, str(item)]
            else:
                argv += [option.flag, str(option.to_toml(value))]
        return argv


NO_PUSHBACK: Final = Pushback()


# -- reading one value ----------------------------------------------------------


def _count(minimum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected a whole number, {minimum} or more, got {value!r}")
        return value

    return parse


def _rate(value: object) -> RateLimit:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _RATE.match(text) if isinstance(text, str) else None
    unit = (match.group(2) or "min").lower() if match else ""
    if match is None or unit not in _WINDOWS:
        raise ValueError(
            f"expected a count per minute such as 30/min (or 5/s, 600/h), got {value!r}"
        )
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"a limit lets at least 1 through, got {value!r}")
    return RateLimit(count, _WINDOWS[unit])


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as 300ms, 5s or 5m, got {value!r}")
    seconds = parse_duration(value)
    if not seconds > 0:
        raise ValueError(f"expected a duration longer than 0, got {value!r}")
    return seconds


def _throttle(value: object) -> int:
    if isinstance(value, str):
        text = value.strip()
        if text.lower().endswith("/s"):
            text = text[:-2]
        value = text
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected bytes per second such as 64KiB/s, got {value!r}")
    try:
        rate = parse_size(value)
    except ValueError:
        raise ValueError(f"expected bytes per second such as 64KiB/s, got {value!r}") from None
    if rate < 1:
        raise ValueError(f"a throttle lets at least 1 byte a second through, got {value!r}")
    return rate


def _extensions(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    names: list[str] = []
    for item in items:
        name = item.strip().upper() if isinstance(item, str) else None
        if name not in EXTENSIONS:
            raise ValueError(f"expected one of {', '.join(EXTENSIONS)}, got {item!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


def _path(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a directory path, got {value!r}")
    return value


def _format_duration(seconds: float) -> str:
    candidates = [f"{seconds:.6g}s"]
    if seconds < 1:
        candidates.insert(0, f"{seconds * 1000:.6g}ms")
    for text in candidates:
        if parse_duration(text) == seconds:
            return text
    return repr(seconds)


def _proxy(value: object) -> str:
    if value != "haproxy":
        raise ValueError(f'expected "haproxy" (PROXY protocol v1 or v2), got {value!r}')
    return "haproxy"


def _same(value: object) -> object:
    return value


def _listed(value: object) -> object:
    return list(value)  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # in [sink]; the flag is --key-with-dashes
    parse: Callable[[object], object]  # TOML value or flag text; ValueError if wrong
    to_toml: Callable[[object], object]
    metavar: str
    help: str
    repeat: bool = False  # a list in TOML, a repeated flag

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def default(self) -> object:
        return getattr(NO_PUSHBACK, self.key)


OPTIONS: Final = (
    Option(
        "client_connection_limit",
        _count(1),
        _same,
        "N",
        "connections at once from one client address; one more gets 421 4.7.0 at the banner "
        "(smtpd_client_connection_count_limit)",
    ),
    Option(
        "client_connection_rate",
        _rate,
        str,
        "N/min",
        "connection attempts from one client address per minute (or /s, /h); beyond, 421 "
        "4.7.0 at the banner (smtpd_client_connection_rate_limit)",
    ),
    Option(
        "client_message_rate",
        _rate,
        str,
        "N/min",
        "MAIL FROM requests from one client address per minute (or /s, /h); beyond, 450 4.7.1 "
        "(smtpd_client_message_rate_limit)",
    ),
    Option(
        "greylist",
        _duration,
        _format_duration,
        "DELAY",
        "greylist: defer each (client address, sender, recipient) with 450 4.7.1 until DELAY "
        "after its first attempt, then take it (postgrey)",
    ),
    Option(
        "tarpit_after",
        _count(1),
        _same,
        "N",
        "after N error replies in a session, hold every further reply for --tarpit-delay "
        "(smtpd_soft_error_limit)",
    ),
    Option(
        "tarpit_delay",
        _duration,
        _format_duration,
        "DUR",
        "how long a tarpitted reply is held (default 1s; smtpd_error_sleep_time)",
    ),
    Option(
        "max_sessions",
        _count(1),
        _same,
        "N",
        "sessions served at once, all clients together; one more gets 421 4.7.0 at the banner "
        "(default_process_limit)",
    ),
    Option(
        "throttle",
        _throttle,
        lambda rate: f"{rate}/s",
        "BYTES/s",
        "read at most BYTES a second from each connection (64KiB/s): a slow link",
    ),
    Option(
        "no_extension",
        _extensions,
        _listed,
        "NAME",
        f"switch an ESMTP extension off: not in the EHLO reply, its command or parameter "
        f"refused; repeat for more ({', '.join(EXTENSIONS)})",
        repeat=True,
    ),
    Option(
        "maildir",
        _path,
        _same,
        "PATH",
        "write every accepted message, as received, to the Maildir PATH (created if missing)",
    ),
    Option(
        "maildir_limit",
        _count(0),
        _same,
        "N",
        f"write at most N messages to --maildir, count the rest (default {DEFAULT_MAILDIR_LIMIT})",
    ),
    Option(
        "proxy_protocol",
        _proxy,
        _same,
        "haproxy",
        "every connection starts with a PROXY protocol header (v1 or v2), whose client "
        "address the limits and greylisting count by; one without it is closed "
        "(postscreen_upstream_proxy_protocol)",
    ),
)
KEYS: Final = tuple(option.key for option in OPTIONS)
_BY_KEY: Final = {option.key: option for option in OPTIONS}


def parse_pushback_option(key: str, value: object, *, name: str | None = None) -> object:
    """One setting's value; PushbackError naming ``name`` (the key or flag as written)."""
    try:
        return _BY_KEY[key].parse(value)
    except ValueError as exc:
        raise PushbackError(name or key, str(exc)) from None


def parse_pushback_table(table: Mapping[str, object]) -> Pushback:
    """Settings from the pushback keys of a ``[sink]`` table (other keys are ignored);
    errors name the key."""
    values = {
        key: parse_pushback_option(key, value) for key, value in table.items() if key in _BY_KEY
    }
    return _checked(Pushback(**values), lambda key: key)  # type: ignore[arg-type]


def pushback_from_flags(values: Mapping[str, object]) -> Pushback:
    """Settings from parsed flags, ``{key: value}`` with None (or an empty list) for a
    flag not given; errors name the flag."""
    given = {key: value for key, value in values.items() if value not in (None, [], ())}
    parsed: dict[str, object] = {}
    for key, value in given.items():
        flag = _BY_KEY[key].flag
        if _BY_KEY[key].repeat:
            parsed[key] = parse_pushback_option(key, list(value), name=flag)  # type: ignore[call-overload]
        else:
            parsed[key] = parse_pushback_option(key, value, name=flag)
    return _checked(Pushback(**parsed), lambda key: _BY_KEY[key].flag)  # type: ignore[arg-type]


def _checked(settings: Pushback, name: Callable[[str], str]) -> Pushback:
    if settings.tarpit_delay != DEFAULT_TARPIT_DELAY and settings.tarpit_after is None:
        raise PushbackError(
            name("tarpit_delay"), f"only means something with {name('tarpit_after')}"
        )
    if settings.maildir_limit != DEFAULT_MAILDIR_LIMIT and settings.maildir is None:
        raise PushbackError(name("maildir_limit"), f"only means something with {name('maildir')}")
    return settings
