"""Reading scenarios from TOML, with an error for every mistake that names the file and key."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

from smtpbench.faults import SINK_KEYS, FaultPlan, FaultSpecError, parse_fault_table
from smtpbench.protocol.steps import Step
from smtpbench.scenario.address_lists import AddressList, read_address_list
from smtpbench.scenario.client_identity import NO_CLIENT_IDENTITY, ClientIdentity
from smtpbench.scenario.content_reader import read_content
from smtpbench.scenario.delivery import DELIVERY_MODES, OPEN_DELIVERY, Delivery
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.model import (
    AUTH_MECHANISMS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PASSWORD_ENV,
    DEFAULT_SUCCESS,
    DEFAULT_TIMEOUTS,
    DEFAULT_USERNAME_ENV,
    DSN_NOTIFY,
    NO_DSN,
    NO_REPLY_STEPS,
    REQUIRABLE,
    TARGET_CHOICES,
    Auth,
    Dsn,
    Load,
    Scenario,
    Session,
    Stage,
    Target,
    TargetHost,
    Tls,
    default_scenario,
)
from smtpbench.scenario.reader import (
    Table,
    as_bool,
    as_int,
    as_str,
    describe,
    key_path,
    numeric,
    one_of,
    positive,
    require,
)
from smtpbench.scenario.sizes import (
    DEFAULT_LOGNORMAL_MAX,
    MIN_MESSAGE_SIZE,
    SIZE_KINDS,
    IntRange,
    SizeDistribution,
    format_size,
    parse_message_size,
)
from smtpbench.scenario.sources import parse_sources
from smtpbench.scenario.templates import check_template
from smtpbench.thresholds import ThresholdError, ThresholdSettings, parse_threshold
from smtpbench.units import parse_duration, parse_rate, parse_share, parse_size

# The example scenarios ship with the package, so that `smtpbench run newsletter-burst`
# works anywhere; a ./scenarios folder comes first and can hold its own.
EXAMPLES_DIR: Final = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_SEARCH_DIRS: Final = (Path("scenarios"), EXAMPLES_DIR)

_DURATION = numeric(parse_duration, "a duration such as 500ms, 10s or 5m")
_RATE = numeric(parse_rate, "a rate such as 300/s or 1200/m")
_SHARE = numeric(parse_share, "a share such as 5% or 0.05")
_TOP_KEYS: Final = (
    "name",
    "description",
    "seed",
    "target",
    "load",
    "session",
    "success",
    "timeouts",
    "sink",
    "thresholds",
    "tls",
    "auth",
    "content",
    "delivery",
    "client",
)
_STAGE_EXAMPLE: Final = '{ duration = "30s", rate = "100/s" }'
# The keys that only mean something for the open model (an arrival rate).
_OPEN_ONLY: Final = ("rate", "start_rate", "stages", "arrivals", "max_concurrency", "backlog")


def load_scenario(
    spec: str | os.PathLike[str], *, search_dirs: Sequence[Path] = DEFAULT_SEARCH_DIRS
) -> Scenario:
    """Read a scenario from a path, or by name from ``<dir>/<name>.toml`` in ``search_dirs``.

    The name ``default`` falls back to the built-in ``default_scenario()`` when
    no ``default.toml`` is found, so that a bare ``smtpbench run`` works anywhere.
    """
    path = _find(spec, search_dirs)
    if path is None:
        return default_scenario()
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(f"not UTF-8 text ({error.reason})", file=file) from None
    except OSError as error:
        raise ScenarioError(f"cannot read it: {error.strerror or error}", file=file) from None
    return replace(parse_scenario(text, file=file, default_name=path.stem), source=file)


def available_scenarios(search_dirs: Sequence[Path] = DEFAULT_SEARCH_DIRS) -> list[str]:
    """The names ``load_scenario`` finds in ``search_dirs``, sorted."""
    names: set[str] = set()
    for directory in search_dirs:
        if directory.is_dir():
            names.update(p.stem for p in directory.glob("*.toml") if p.is_file())
    return sorted(names)


def _find(spec: str | os.PathLike[str], search_dirs: Sequence[Path]) -> Path | None:
    path = Path(spec)
    text = os.fspath(spec)
    if path.suffix == ".toml" or os.sep in text or (os.altsep and os.altsep in text):
        if path.is_file():
            return path
        raise ScenarioError(f"no such scenario file{_available(search_dirs)}", file=text)
    tried = [directory / f"{text}.toml" for directory in search_dirs]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    if text == "default":
        return None
    listed = ", ".join(str(p) for p in tried) or "no directories to search"
    raise ScenarioError(f"no scenario named {text!r} (tried {listed}){_available(search_dirs)}")


def _available(search_dirs: Sequence[Path]) -> str:
    names = available_scenarios(search_dirs)
    return f"; available: {', '.join(names)}" if names else ""


def parse_scenario(
    text: str, *, file: str | None = None, default_name: str = "scenario"
) -> Scenario:
    """A scenario from TOML text; ``file`` is only used to name it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError.from_toml(error, file) from None
    return scenario_from_table(data, file=file, default_name=default_name)


def scenario_from_table(
    data: Mapping[str, object], *, file: str | None = None, default_name: str = "scenario"
) -> Scenario:
    """A scenario from an already-parsed TOML document."""
    top = Table(data, "", file)
    # Unknown tables first: a misspelt [sesion] explains more than what follows from it.
    top.finish(_TOP_KEYS)
    target = _target(top.table("target"))
    sink = _sink(top.table("sink"))
    if not sink.is_empty and target.host is not None:
        raise top.error(
            "sink",
            f"faults apply to the embedded sink, but target.host sends to {target.host}; "
            "remove one of them",
        )
    name = top.get("name", default_name, _name)
    description = top.get("description", "", as_str)
    seed = top.get("seed", None, as_int(0))
    load = _load(top.table("load"))
    base = Path(file).parent if file else Path.cwd()
    session = _session(top.table("session"), base)
    tls = _tls(top.table("tls"))
    auth = _auth(top.table("auth"))
    if session.greeting == "HELO":
        for key, used in (("tls.mode", tls.mode == "starttls"), ("auth.mechanism", auth.enabled)):
            if used:
                raise ScenarioError(
                    "STARTTLS and AUTH are ESMTP extensions, but session.greeting is HELO; "
                    "use EHLO",
                    file=file,
                    key=key,
                )
    content = read_content(
        top.table("content"),
        base,
        size=_size,
        eight_bit=session.body == "8bitmime" or session.smtputf8,
    )
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        target=target,
        load=load,
        session=session,
        content=content,
        delivery=_delivery(top.table("delivery")),
        client=_client(top.table("client")),
        success=_success(top.table("success")),
        timeouts=_timeouts(top.table("timeouts")),
        sink=sink,
        thresholds=_thresholds(top.table("thresholds")),
        tls=tls,
        auth=auth,
    )


def _name(value: object) -> str:
    name = as_str(value).strip()
    if not name or not name.isprintable():
        raise ValueError(f"expected a short name on one line, got {value!r}")
    return name


def _target(t: Table) -> Target:
    host = t.get("host", None, _host)
    port = t.get("port", 25, as_int(1, 65535))
    source = t.get("source", (), _sources)
    hosts = _target_hosts(t) if t.has("hosts") else ()
    if hosts and (t.has("host") or t.has("port")):
        raise t.error("hosts", "hosts and host (or port) both name the server: choose one")
    choose = t.get("choose", "round-robin", one_of(*TARGET_CHOICES))
    if t.has("choose") and not hosts:
        raise t.error("choose", "chooses among hosts; give hosts (two servers or more)")
    t.finish(("hosts",))
    try:
        return Target(host=host, port=port, source=source, hosts=hosts, choose=choose)  # type: ignore[arg-type]
    except ValueError as err:
        raise t.error("hosts", str(err)) from None


def _target_hosts(t: Table) -> tuple[TargetHost, ...]:
    value = t.raw("hosts")
    example = '[{ host = "mx1.example", port = 25, weight = 2 }, { host = "mx2.example" }]'
    if not isinstance(value, list) or not value:
        raise t.error("hosts", f"expected an array of tables such as {example}")
    hosts = []
    for number, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise t.error(f"hosts[{number}]", f"expected a table such as {example}")
        h = Table(item, f"{t.path}.hosts[{number}]", t.file)
        values = {
            "host": require(h, "host", _host, "the server's name or address"),
            "port": h.get("port", 25, as_int(1, 65535)),
            "weight": h.get("weight", 1.0, _positive_weight),
        }
        h.finish()
        hosts.append(TargetHost(**values))  # type: ignore[arg-type]
    return tuple(hosts)


def _positive_weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"expected a weight above 0, got {value!r}")
    return float(value)


def _sources(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        value = ",".join(as_str(item) for item in value)
    return parse_sources(as_str(value))


def _host(value: object) -> str:
    host = as_str(value).strip()
    if not host or any(ch.isspace() for ch in host):
        raise ValueError(
            f"expected a host name or address, got {value!r} (leave host out for the embedded sink)"
        )
    return host


def _load(t: Table) -> Load:
    mode = t.get("mode", None, one_of("rate", "concurrency"))
    if mode is None:
        mode = "rate"
        if t.has("concurrency"):
            for key in ("rate", "stages"):
                if t.has(key):
                    raise t.error(
                        "concurrency",
                        f"cannot be combined with load.{key}: concurrency keeps a fixed number "
                        f"of sessions in flight (closed model), {key} sets an arrival rate "
                        "(open model); keep one of them",
                    )
            mode = "concurrency"
    if mode == "concurrency":
        for key in _OPEN_ONLY:
            if t.has(key):
                raise t.error(
                    key,
                    "applies to an arrival rate (the open model), but this scenario keeps a "
                    "fixed number of sessions in flight (load.concurrency)",
                )
    elif t.has("concurrency"):
        raise t.error(
            "concurrency",
            'applies to the closed model, but load.mode is "rate"; use load.max_concurrency '
            "to cap the sessions in flight",
        )
    if t.has("rate") and t.has("stages"):
        raise t.error(
            "rate",
            "cannot be combined with load.stages: each stage sets its own rate, and the last "
            "one holds until the end",
        )
    if t.has("start_rate") and not t.has("stages"):
        raise t.error(
            "start_rate", "only applies with load.stages (the rate the first one ramps from)"
        )

    stages = _stages(t) if t.has("stages") else ()
    duration = t.get("duration", None, positive(_DURATION, "a run's duration"))
    sessions = t.get("sessions", None, as_int(1))
    if duration is None and sessions is None and not stages:
        duration = 20.0
    values = {
        "mode": mode,
        "rate": t.get("rate", 20.0, positive(_RATE, "a constant rate")),
        "start_rate": t.get("start_rate", 0.0, _RATE),
        "stages": stages,
        "arrivals": t.get("arrivals", "uniform", one_of("uniform", "poisson")),
        "concurrency": t.get("concurrency", 10, as_int(1)),
        "duration": duration,
        "sessions": sessions,
        "max_concurrency": t.get("max_concurrency", 1000, as_int(1)),
        "backlog": t.get("backlog", 10000, as_int(0)),
        "grace": t.get("grace", 10.0, _DURATION),
    }
    t.finish()
    try:
        return Load(**values)  # type: ignore[arg-type]
    except ValueError as error:  # every check above passed: what is left concerns the whole
        raise t.error(None, str(error)) from None


def _stages(t: Table) -> tuple[Stage, ...]:
    value = t.raw("stages")
    if not isinstance(value, list):
        raise t.error(
            "stages",
            f"expected an array such as [{_STAGE_EXAMPLE}], got {describe(value)}",
        )
    if not value:
        raise t.error("stages", "expected at least one stage (or leave stages out)")
    stages = []
    for index, item in enumerate(value):
        path = f"{t.path}.stages[{index}]"
        if not isinstance(item, Mapping):
            raise ScenarioError(
                f"expected a table such as {_STAGE_EXAMPLE}, got {describe(item)}",
                file=t.file,
                key=path,
            )
        stage = Table(item, path, t.file)
        duration = require(
            stage, "duration", positive(_DURATION, "a stage's duration"), "how long the stage lasts"
        )
        rate = require(stage, "rate", _RATE, "the rate reached at the end of the stage")
        stage.finish()
        stages.append(Stage(duration=duration, rate=rate))
    start_rate = t.get("start_rate", 0.0, _RATE)
    if start_rate == 0 and not any(stage.rate for stage in stages):
        raise t.error("stages", "every stage has rate 0, so no session would ever start")
    return tuple(stages)


def _template(kind: str, utf8: bool = False) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = as_str(value)
        check_template(text, kind=kind, utf8=utf8)
        return text

    return convert


def _count(least: int) -> Callable[[object], IntRange]:
    def convert(value: object) -> IntRange:
        counts = IntRange.parse(value)  # type: ignore[arg-type]
        if counts.low < least:
            raise ValueError(f"expected at least {least}, got {value!r}")
        return counts

    return convert


def _session(t: Table, base: Path) -> Session:
    greeting = t.get("greeting", "EHLO", one_of("EHLO", "HELO", "LHLO", upper=True))
    utf8 = t.get("smtputf8", False, as_bool)
    values = {
        "greeting": greeting,
        "helo_name": t.get("helo_name", "smtpbench.localhost", _template("hostname")),
        # 0 messages is a session that only greets and quits: a connection-rate test.
        "messages": t.get("messages", IntRange(1, 1), _count(0)),
        "recipients": t.get("recipients", IntRange(1, 1), _count(1)),
        "mail_from": t.get(
            "mail_from", "sender{session}@smtpbench.test", _template("address", utf8)
        ),
        "rcpt_to": t.get("rcpt_to", "user{counter}@smtpbench.test", _template("address", utf8)),
        "size": _size(t) if t.has("size") else SizeDistribution.fixed(2048),
        "subject": t.get("subject", "smtpbench test {session}.{message}", _template("text", utf8)),
        "rset_between_messages": t.get("rset_between_messages", False, as_bool),
        "noop": t.get("noop", 0.0, _SHARE),
        "pipelining": t.get("pipelining", False, as_bool),
        "chunking": t.get("chunking", False, as_bool),
        "chunk_size": t.get("chunk_size", DEFAULT_CHUNK_SIZE, _chunk_size),
        "body": t.get("body", "7bit", one_of("7bit", "8bitmime")),
        "smtputf8": utf8,
        "dsn": _dsn(t.table("dsn")) if t.has("dsn") else NO_DSN,
        "require": t.get("require", (), _require),
        "senders": t.get("senders_file", None, _address_list(base, utf8)),
        "recipients_list": t.get("recipients_file", None, _address_list(base, utf8)),
    }
    for key, listed in (("mail_from", "senders_file"), ("rcpt_to", "recipients_file")):
        if t.has(key) and t.has(listed):
            raise t.error(listed, f"{key} and {listed} both give the address: choose one")
    if greeting == "HELO":
        for key, used in (
            ("body", values["body"] != "7bit"),
            ("smtputf8", utf8),
            ("chunking", values["chunking"]),
            ("dsn", t.has("dsn")),
            ("require", bool(values["require"])),
        ):
            if used:
                raise t.error(
                    key,
                    "needs an ESMTP extension, but session.greeting is HELO, which opens a "
                    "session without extensions; use EHLO",
                )
    t.finish()
    return Session(**values)  # type: ignore[arg-type]


def _client(t: Table) -> ClientIdentity:
    if not t.data:
        t.finish()
        return NO_CLIENT_IDENTITY
    proxy = t.get("proxy", None, one_of("v1", "v2"))
    xclient = t.get("xclient", False, as_bool)
    addresses = t.get("addresses", (), _sources)
    name = t.get("name", None, as_str)
    t.finish()
    try:
        return ClientIdentity(
            proxy=int(proxy[1]) if proxy else 0, xclient=xclient, addresses=addresses, name=name
        )
    except ValueError as err:
        raise t.error(None, str(err)) from None


def _delivery(t: Table) -> Delivery:
    if not t.data:
        t.finish()
        return OPEN_DELIVERY
    values = {
        "mode": t.get("mode", "open", one_of(*DELIVERY_MODES)),
        "first_retry": t.get("first_retry", 1.0, positive(_DURATION, "a delay")),
        "max_retry": t.get("max_retry", 30.0, positive(_DURATION, "a delay")),
        "max_age": t.get("max_age", 300.0, positive(_DURATION, "an age")),
        "concurrency_feedback": t.get("concurrency_feedback", True, as_bool),
        "initial_concurrency": t.get("initial_concurrency", 5, as_int(1)),
    }
    t.finish()
    try:
        return Delivery(**values)  # type: ignore[arg-type]
    except ValueError as err:
        raise t.error(None, str(err)) from None


def _address_list(base: Path, utf8: bool) -> Callable[[object], AddressList]:
    def convert(value: object) -> AddressList:
        path = base / as_str(value)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        return read_address_list(str(path.resolve()), utf8=utf8)

    return convert


def _chunk_size(value: object) -> int:
    wanted = f"expected a chunk size such as 64KiB (at least 1 byte), got {value!r}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(wanted)
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError(wanted) from None
    if size < 1:
        raise ValueError(wanted)
    return size


def _require(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    words = []
    for item in items:
        word = as_str(item).strip().upper()
        if word not in REQUIRABLE:
            raise ValueError(f"unknown extension {item!r}; known: {', '.join(REQUIRABLE)}")
        if word not in words:
            words.append(word)
    return tuple(words)


def _dsn(t: Table) -> Dsn:
    notify = t.get("notify", (), _notify)
    ret = t.get("ret", None, one_of("FULL", "HDRS", upper=True))
    envid = t.get("envid", None, _template("text"))
    orcpt = t.get("orcpt", False, as_bool)
    t.finish()
    dsn = Dsn(notify=notify, ret=ret, envid=envid, orcpt=orcpt)
    if dsn.is_empty:
        raise t.error(None, "asks for nothing: set notify, ret, envid or orcpt (or leave dsn out)")
    return dsn


def _notify(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else as_str(value).split(",")
    words: list[str] = []
    for item in items:
        word = as_str(item).strip().upper()
        if word != "NEVER" and word not in DSN_NOTIFY:
            raise ValueError(
                f'expected NEVER or some of {", ".join(DSN_NOTIFY)} (["SUCCESS", "FAILURE"]), '
                f"got {item!r}"
            )
        if word in words:
            raise ValueError(f"{word} is listed twice")
        words.append(word)
    if not words:
        raise ValueError('expected at least one word, such as ["SUCCESS", "FAILURE"]')
    if "NEVER" in words and len(words) > 1:
        raise ValueError("NEVER cannot be combined with SUCCESS, FAILURE or DELAY")
    return tuple(words)


def _tls(t: Table) -> Tls:
    mode = t.get("mode", "none", one_of("none", "starttls", "implicit"))
    values = {
        "mode": mode,
        "verify": t.get("verify", True, as_bool),
        "sni": t.get("sni", None, _host),
        "ca_file": t.get("ca_file", None, _path),
        "client_cert": t.get("client_cert", None, _path),
        "client_key": t.get("client_key", None, _path),
    }
    t.finish()
    if values["client_key"] is not None and values["client_cert"] is None:
        raise t.error("client_key", "needs tls.client_cert, the certificate the key belongs to")
    if mode == "none":
        for key in ("sni", "ca_file", "client_cert"):
            if values[key] is not None:
                raise t.error(key, 'applies to TLS, but tls.mode is "none"')
    return Tls(**values)  # type: ignore[arg-type]


def _path(value: object) -> str:
    text = as_str(value)
    if not text.strip():
        raise ValueError("expected a file path, got an empty string")
    return text


def _auth(t: Table) -> Auth:
    mechanisms = " or ".join(repr(m) for m in AUTH_MECHANISMS)
    mechanism = t.get("mechanism", None, one_of(*AUTH_MECHANISMS, upper=True))
    values = {
        "mechanism": mechanism,
        "username": t.get("username", None, _username),
        "username_env": t.get("username_env", DEFAULT_USERNAME_ENV, _env_name),
        "password_env": t.get("password_env", DEFAULT_PASSWORD_ENV, _env_name),
        "password": t.get("password", None, _secret),
    }
    t.finish()
    if mechanism is None:
        for key in ("username", "username_env", "password_env", "password"):
            if t.has(key):
                raise t.error(key, f"applies to AUTH, but auth.mechanism is not set ({mechanisms})")
    return Auth(**values)  # type: ignore[arg-type]


def _username(value: object) -> str:
    text = as_str(value)
    if not text or not text.isprintable():
        raise ValueError("expected a user name on one line")
    return text


def _secret(value: object) -> str:
    # Never echo the value: it is a secret even when it is wrong.
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if not value or "\x00" in value or "\r" in value or "\n" in value:
        raise ValueError("expected a non-empty string on one line")
    return value


def _env_name(value: object) -> str:
    text = as_str(value)
    if not text or not text.replace("_", "a").isalnum() or text[0].isdigit():
        raise ValueError(f"expected the name of an environment variable, got {value!r}")
    return text


def _size(t: Table, key: str = "size") -> SizeDistribution:
    value = t.raw(key)
    if not isinstance(value, Mapping):
        return SizeDistribution.fixed(t.convert(key, value, parse_message_size))
    s = Table(value, f"{t.path}.{key}", t.file)
    kinds = " or ".join(repr(k) for k in SIZE_KINDS)
    kind = require(s, "distribution", one_of(*SIZE_KINDS), f"one of {kinds}")
    if kind == "fixed":
        result = SizeDistribution.fixed(require(s, "size", parse_message_size, "the size"))
    elif kind == "uniform":
        low = require(s, "min", parse_message_size, "the smallest size")
        high = require(s, "max", parse_message_size, "the largest size")
        if high < low:
            raise s.error("max", f"{format_size(high)} is below min ({format_size(low)})")
        result = SizeDistribution.uniform(low, high)
    elif kind == "lognormal":
        result = _lognormal(s)
    else:
        result = _choice(s)
    s.finish()
    return result


def _lognormal(s: Table) -> SizeDistribution:
    median = require(s, "median", parse_message_size, "the typical (middle) size")
    sigma = require(
        s,
        "sigma",
        positive(_number, "sigma"),
        "the spread, as the standard deviation of the log of the size (1.0 is typical)",
    )
    low = s.get("min", MIN_MESSAGE_SIZE, parse_message_size)
    high = s.get("max", DEFAULT_LOGNORMAL_MAX, parse_message_size)
    if high < low:
        raise s.error("max", f"{format_size(high)} is below min ({format_size(low)})")
    if not low <= median <= high:
        raise s.error(
            "median", f"{format_size(median)} lies outside {format_size(low)}..{format_size(high)}"
        )
    return SizeDistribution.lognormal(median, sigma, low=low, high=high)


def _choice(s: Table) -> SizeDistribution:
    raw_sizes = require(s, "sizes", _array, 'a list of sizes such as ["1KiB", "100KiB"]')
    if not raw_sizes:
        raise s.error("sizes", "expected at least one size")
    sizes = tuple(
        s.convert(f"sizes[{i}]", item, parse_message_size) for i, item in enumerate(raw_sizes)
    )
    weights: tuple[float, ...] | None = None
    if s.has("weights"):
        raw_weights = s.get("weights", [], _array)
        if len(raw_weights) != len(sizes):
            raise s.error(
                "weights", f"{len(raw_weights)} weights for {len(sizes)} sizes: give one per size"
            )
        weights = tuple(
            s.convert(f"weights[{i}]", item, _weight) for i, item in enumerate(raw_weights)
        )
        if not any(weights):
            raise s.error("weights", "at least one weight must be above 0")
    return SizeDistribution.choice(sizes, weights)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number such as 1.0, got {describe(value)}")
    return float(value)


def _array(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {describe(value)}")
    return value


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"expected a non-negative number, got {describe(value)}")
    if value == float("inf"):
        raise ValueError("expected a finite number, got inf")
    return float(value)


def _steps(t: Table) -> list[tuple[str, Step]]:
    """The keys of a [success] or [timeouts] table as steps, each at most once."""
    seen: dict[Step, str] = {}
    steps = []
    for key in t.data:
        t.raw(key)
        try:
            step = Step.from_label(key)
        except ValueError as error:
            raise t.error(key, str(error)) from None
        if step in seen:
            raise t.error(key, f"the same step as {t.path}.{seen[step]}")
        seen[step] = key
        steps.append((key, step))
    return steps


def _success(t: Table) -> tuple[frozenset[int], ...]:
    success = list(DEFAULT_SUCCESS)
    for key, step in _steps(t):
        if step in NO_REPLY_STEPS:
            raise t.error(key, f"the {step.label} step has no reply, so no success codes")
        success[step] = t.convert(key, t.data[key], _codes)
    return tuple(success)


def _codes(value: object) -> frozenset[int]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError('expected at least one reply code, such as [250, 251] or ["2xx"]')
    codes: set[int] = set()
    for item in items:
        codes.update(_code(item))
    return frozenset(codes)


def _code(item: object) -> range:
    wanted = 'a reply code such as 250 or a class such as "2xx"'
    if isinstance(item, str):
        text = item.strip().lower()
        if len(text) == 3 and text.endswith("xx") and text[0] in "2345":
            first = int(text[0]) * 100
            return range(first, first + 100)
        if text.isdigit():
            item = int(text)
    if isinstance(item, bool) or not isinstance(item, int):
        raise ValueError(f"expected {wanted}, got {describe(item)}")
    if not 200 <= item <= 599:
        raise ValueError(f"expected {wanted}; SMTP reply codes lie between 200 and 599, got {item}")
    return range(item, item + 1)


def _sink(t: Table) -> FaultPlan:
    t.finish(SINK_KEYS)  # for a "did you mean"
    try:
        return parse_fault_table(t.data)
    except FaultSpecError as error:
        # The faults module names keys within [sink] ("delay.DATA end"): quote as we do.
        path = t.path
        for part in error.key.split(".", 1):
            path = key_path(path, part)
        raise ScenarioError(error.message, file=t.file, key=path) from None


def _timeouts(t: Table) -> tuple[float, ...]:
    timeouts = list(DEFAULT_TIMEOUTS)
    for key, step in _steps(t):
        timeouts[step] = t.convert(key, t.data[key], positive(_DURATION, "a timeout"))
    return tuple(timeouts)


def _thresholds(t: Table) -> ThresholdSettings:
    checks = []
    raw = t.get("checks", [], _array)
    for index, item in enumerate(raw):
        key = f"checks[{index}]"
        if not isinstance(item, str):
            example = '"p99(DATA) < 250ms"'
            raise t.error(key, f"expected a threshold such as {example}, got {describe(item)}")
        try:
            checks.append(parse_threshold(item))
        except ThresholdError as error:
            raise t.error(key, str(error)) from None
    settings = ThresholdSettings(
        checks=tuple(checks),
        abort_on_fail=t.get("abort_on_fail", False, as_bool),
        abort_grace=t.get("abort_grace", 10.0, _DURATION),
    )
    t.finish()
    return settings
