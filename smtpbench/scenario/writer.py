"""Writing a scenario back as TOML, every value explicit, in the form the loader reads.

A small writer of our own rather than a TOML library: the scenario package
stays on the standard library, and the output gets comments and units
(``"2KiB"``, ``"5m"``) that a person can edit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from smtpbench.protocol.steps import Step
from smtpbench.scenario.content_spec import Content
from smtpbench.scenario.formatting import duration_text, rate_text, share_text
from smtpbench.scenario.model import NO_REPLY_STEPS, Auth, Dsn, Load, Scenario, Session, Tls
from smtpbench.scenario.sizes import SizeDistribution, format_size

TomlValue = str | int | float | bool | list["TomlValue"] | Mapping[str, "TomlValue"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def scenario_to_toml(scenario: Scenario) -> str:
    """The resolved scenario as TOML; ``parse_scenario`` of it equals ``scenario``."""
    lines = ["# The resolved scenario: every value explicit, defaults included."]
    lines += _pairs(_top(scenario))
    lines += ["", "[target]"]
    target = scenario.target
    if target.hosts:
        hosts: list[TomlValue] = [
            {"host": h.host, "port": h.port, "weight": h.weight} for h in target.hosts
        ]
        lines.append(_pair("hosts", hosts))
        lines.append(_pair("choose", target.choose))
    elif target.host is None:
        lines.append("# no host: the embedded sink")
        lines.append(_pair("port", target.port))
    else:
        lines.append(_pair("host", target.host))
        lines.append(_pair("port", target.port))
    if scenario.target.source:
        lines.append(_pair("source", ", ".join(scenario.target.source)))
    lines += ["", "[load]", *_load(scenario.load)]
    lines += ["", "[session]", *_pairs(_session(scenario.session))]
    lines += ["", "[tls]", *_tls(scenario.tls)]
    lines += ["", "[auth]", *_auth(scenario.auth)]
    lines += ["", "[success]", *_pairs(_success(scenario))]
    lines += ["", "[timeouts]", *_pairs(_timeouts(scenario))]
    lines += ["", "[sink]"]
    if scenario.sink.is_empty:
        lines.append("# no faults")
    else:
        lines += _pairs(scenario.sink.to_table())  # type: ignore[arg-type]
    lines += ["", "[thresholds]", *_thresholds(scenario)]
    if not scenario.content.is_plain:
        lines += _content(scenario.content)
    client = scenario.client
    if not client.is_empty:
        lines += ["", "[client]"]
        claim: dict[str, TomlValue] = (
            {"proxy": f"v{client.proxy}"} if client.proxy else {"xclient": True}
        )
        claim["addresses"] = ", ".join(client.addresses)
        if client.name is not None:
            claim["name"] = client.name
        lines += _pairs(claim)
    delivery = scenario.delivery
    if delivery.retries:
        lines += ["", "[delivery]"]
        lines += _pairs(
            {
                "mode": delivery.mode,
                "first_retry": duration_text(delivery.first_retry),
                "max_retry": duration_text(delivery.max_retry),
                "max_age": duration_text(delivery.max_age),
                "concurrency_feedback": delivery.concurrency_feedback,
                "initial_concurrency": delivery.initial_concurrency,
            }
        )
    return "\n".join(lines) + "\n"


def _content(content: Content) -> list[str]:
    top: dict[str, TomlValue] = {}
    if content.headers:
        top["headers"] = dict(content.headers)
    for key in ("test_body", "body_file", "body_template"):
        value = getattr(content, key)
        if value is not None:
            top[key] = value
    lines = ["", "[content]", *_pairs(top)]
    for part in content.mix:
        item: dict[str, TomlValue] = {"kind": part.kind, "weight": part.weight}
        if part.kind == "html":
            item["images"] = part.images
            item["image_size"] = format_size(part.image_size)
        if part.kind == "attachment":
            item["type"] = part.attachment_type
            item["size"] = size_to_toml(part.attachment_size)
            if part.attachment_name is not None:
                item["name"] = part.attachment_name
        lines += ["", "[[content.mix]]", *_pairs(item)]
    if content.corpus is not None:
        corpus = content.corpus
        lines += ["", "[content.corpus]"]
        lines += _pairs(
            {"path": corpus.path, "sampling": corpus.sampling, "anonymise": corpus.anonymise}
        )
    if content.dkim is not None:
        dkim = content.dkim
        lines += ["", "[content.dkim]"]
        lines += _pairs(
            {
                "domain": dkim.domain,
                "selector": dkim.selector,
                "key_file": dkim.key_file,
                "headers": list(dkim.headers),
            }
        )
    return lines


def _top(scenario: Scenario) -> dict[str, TomlValue]:
    values: dict[str, TomlValue] = {"name": scenario.name, "description": scenario.description}
    if scenario.seed is not None:
        values["seed"] = scenario.seed
    return values


def _load(load: Load) -> list[str]:
    lines = [_pair("mode", load.mode)]
    if load.mode == "concurrency":
        lines.append(_pair("concurrency", load.concurrency))
    elif load.stages:
        stages = [
            {"duration": duration_text(s.duration), "rate": rate_text(s.rate)} for s in load.stages
        ]
        lines.append(_pair("start_rate", rate_text(load.start_rate)))
        lines.append("stages = [")
        lines += [f"    {_value(stage)}," for stage in stages]
        lines.append("]")
    else:
        lines.append(_pair("rate", rate_text(load.rate)))
    if load.mode == "rate":
        lines.append(_pair("arrivals", load.arrivals))
    if load.duration is not None:
        lines.append(_pair("duration", duration_text(load.duration)))
    if load.sessions is not None:
        lines.append(_pair("sessions", load.sessions))
    if load.mode == "rate":
        lines.append(_pair("max_concurrency", load.max_concurrency))
        lines.append(_pair("backlog", load.backlog))
    lines.append(_pair("grace", duration_text(load.grace)))
    return lines


def _session(session: Session) -> dict[str, TomlValue]:
    return {
        "greeting": session.greeting,
        "helo_name": session.helo_name,
        "messages": _count(session.messages.low, session.messages.high),
        "recipients": _count(session.recipients.low, session.recipients.high),
        **(
            {"senders_file": session.senders.path}
            if session.senders is not None
            else {"mail_from": session.mail_from}
        ),
        **(
            {"recipients_file": session.recipients_list.path}
            if session.recipients_list is not None
            else {"rcpt_to": session.rcpt_to}
        ),
        "size": size_to_toml(session.size),
        "subject": session.subject,
        "rset_between_messages": session.rset_between_messages,
        "noop": share_text(session.noop),
        "pipelining": session.pipelining,
        "chunking": session.chunking,
        "chunk_size": format_size(session.chunk_size),
        "body": session.body,
        "smtputf8": session.smtputf8,
        "require": list(session.require),
        **({} if session.dsn.is_empty else {"dsn": _dsn(session.dsn)}),
    }


def _dsn(dsn: Dsn) -> TomlValue:
    values: dict[str, TomlValue] = {}
    if dsn.notify:
        values["notify"] = list(dsn.notify)
    if dsn.ret is not None:
        values["ret"] = dsn.ret
    if dsn.envid is not None:
        values["envid"] = dsn.envid
    values["orcpt"] = dsn.orcpt
    return values


def _tls(tls: Tls) -> list[str]:
    lines = [_pair("mode", tls.mode), _pair("verify", tls.verify)]
    for key in ("sni", "ca_file", "client_cert", "client_key"):
        value = getattr(tls, key)
        if value is not None:
            lines.append(_pair(key, value))
    return lines


def _auth(auth: Auth) -> list[str]:
    if auth.mechanism is None:
        return ["# no AUTH"]
    lines = [_pair("mechanism", auth.mechanism)]
    if auth.username is not None:
        lines.append(_pair("username", auth.username))
    else:
        lines.append(_pair("username_env", auth.username_env))
    lines.append(_pair("password_env", auth.password_env))
    if auth.password is not None:
        lines.append("# the scenario gave a password: it is never written out")
    return lines


def _count(low: int, high: int) -> TomlValue:
    return low if low == high else f"{low}..{high}"


def size_to_toml(size: SizeDistribution) -> TomlValue:
    """A size distribution as the loader reads it: a size string or an inline table."""
    if size.kind == "fixed":
        return format_size(size.low)
    if size.kind == "uniform":
        return {
            "distribution": "uniform",
            "min": format_size(size.low),
            "max": format_size(size.high),
        }
    if size.kind == "lognormal":
        return {
            "distribution": "lognormal",
            "median": format_size(size.median),
            "sigma": size.sigma,
            "min": format_size(size.low),
            "max": format_size(size.high),
        }
    return {
        "distribution": "choice",
        "sizes": [format_size(s) for s in size.sizes],
        "weights": [_number(w) for w in size.weights],
    }


def _success(scenario: Scenario) -> dict[str, TomlValue]:
    return {
        step.label: _codes(scenario.success[step]) for step in Step if step not in NO_REPLY_STEPS
    }


def _codes(codes: frozenset[int]) -> TomlValue:
    """Whole classes as ``"2xx"``, the rest as single codes."""
    items: list[TomlValue] = []
    rest = set(codes)
    for first in range(2, 6):
        whole = set(range(first * 100, first * 100 + 100))
        if whole <= rest:
            items.append(f"{first}xx")
            rest -= whole
    items += sorted(rest)
    return items


def _timeouts(scenario: Scenario) -> dict[str, TomlValue]:
    return {step.label: duration_text(scenario.timeouts[step]) for step in Step}


def _thresholds(scenario: Scenario) -> list[str]:
    settings = scenario.thresholds
    lines = ["checks = []"]
    if settings.checks:
        lines = ["checks = [", *(f"    {_value(str(check))}," for check in settings.checks), "]"]
    lines.append(_pair("abort_on_fail", settings.abort_on_fail))
    lines.append(_pair("abort_grace", duration_text(settings.abort_grace)))
    return lines


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# TOML syntax


def _pairs(values: Mapping[str, TomlValue]) -> Iterable[str]:
    return [_pair(key, value) for key, value in values.items()]


def _pair(key: str, value: TomlValue) -> str:
    return f"{toml_key(key)} = {_value(value)}"


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML scenarios hold finite numbers only, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return "{ " + ", ".join(f"{toml_key(k)} = {_value(v)}" for k, v in value.items()) + " }"


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, quotes included, as the writer writes it."""
    return _string(text)


def _string(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in ('"', "\\"):
            escaped.append("\\" + ch)
        elif ch == "\n":
            escaped.append("\\n")
        elif ch == "\t":
            escaped.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'
