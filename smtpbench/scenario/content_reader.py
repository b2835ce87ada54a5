"""Reading a scenario's ``[content]`` table: every error names its key; files named in
it are resolved against the scenario's folder and must exist."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from smtpbench.scenario.content_spec import (
    MIX_KINDS,
    NO_CONTENT,
    SAMPLINGS,
    TEST_BODIES,
    Content,
    Corpus,
    Dkim,
    MixPart,
)
from smtpbench.scenario.reader import Table, as_bool, as_int, as_str, describe, one_of, require
from smtpbench.scenario.sizes import SizeDistribution
from smtpbench.units import parse_size

SizeReader = Callable[[Table, str], SizeDistribution]


def read_content(t: Table, base: Path, *, size: SizeReader, eight_bit: bool) -> Content:
    if not t.data:
        t.finish()
        return NO_CONTENT
    headers = t.get("headers", (), _headers(t))
    test_body = t.get("test_body", None, one_of(*TEST_BODIES))
    body_file = t.get("body_file", None, _file(base))
    body_template = t.get("body_template", None, as_str)
    mix = _mix(t, size) if t.has("mix") else ()
    if mix and eight_bit:
        raise t.error(
            "mix",
            "mixed messages are 7bit text; session.body = 8bitmime and session.smtputf8 "
            "apply to the plain generated message only",
        )
    corpus = _corpus(t.table("corpus"), base) if t.has("corpus") else None
    dkim = _dkim(t.table("dkim"), base) if t.has("dkim") else None
    t.finish(("mix", "corpus", "dkim"))
    try:
        return Content(
            headers=headers,
            test_body=test_body,  # type: ignore[arg-type]
            body_file=body_file,
            body_template=body_template,
            mix=mix,
            corpus=corpus,
            dkim=dkim,
        )
    except ValueError as err:
        raise t.error(None, str(err)) from None


def _headers(t: Table) -> Callable[[object], tuple[tuple[str, str], ...]]:
    def convert(value: object) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, Mapping):
            raise ValueError(
                'expected a table of header templates such as { "X-Campaign" = "spring" }, '
                f"got {describe(value)}"
            )
        pairs = tuple((str(name), as_str(text)) for name, text in value.items())
        # Checked here, so that the error names content.headers.
        Content(headers=pairs)
        return pairs

    return convert


def _file(base: Path) -> Callable[[object], str]:
    def convert(value: object) -> str:
        path = base / as_str(value)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        return str(path.resolve())

    return convert


def _mix(t: Table, size: SizeReader) -> tuple[MixPart, ...]:
    value = t.raw("mix")
    if not isinstance(value, list) or not value:
        raise t.error(
            "mix", f"expected an array of tables ([[content.mix]]), got {describe(value)}"
        )
    parts = []
    for number, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise t.error(f"mix[{number}]", f"expected a table, got {describe(item)}")
        m = Table(item, f"{t.path}.mix[{number}]", t.file)
        kind = require(m, "kind", one_of(*MIX_KINDS), " or ".join(MIX_KINDS))
        values: dict[str, object] = {
            "kind": kind,
            "weight": m.get("weight", 1.0, _weight),
        }
        if kind == "html":
            values["images"] = m.get("images", 0, as_int(0, 20))
            values["image_size"] = m.get("image_size", 20 * 1024, parse_size)
        if kind == "attachment":
            values["attachment_type"] = m.get("type", "application/pdf", as_str)
            if m.has("size"):
                values["attachment_size"] = size(m, "size")
            values["attachment_name"] = m.get("name", None, as_str)
        m.finish()
        try:
            parts.append(MixPart(**values))  # type: ignore[arg-type]
        except ValueError as err:
            raise m.error(None, str(err)) from None
    return tuple(parts)


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a weight above 0, got {value!r}")
    return float(value)


def _corpus(t: Table, base: Path) -> Corpus:
    path = require(t, "path", as_str, "a folder of .eml files, a maildir or an mbox file")
    where = base / path
    if not where.exists():
        raise t.error("path", f"{where}: no such file or folder")
    corpus = Corpus(
        path=str(where.resolve()),
        sampling=t.get("sampling", "with-replacement", one_of(*SAMPLINGS)),  # type: ignore[arg-type]
        anonymise=t.get("anonymise", False, as_bool),
    )
    t.finish()
    return corpus


def _dkim(t: Table, base: Path) -> Dkim:
    values = {
        "domain": require(t, "domain", as_str, "the signing domain (d=)"),
        "selector": require(t, "selector", as_str, "the selector (s=)"),
        "key_file": require(t, "key_file", _file(base), "the private key file (PEM)"),
    }
    if t.has("headers"):
        values["headers"] = t.get("headers", (), _names)
    t.finish()
    try:
        return Dkim(**values)  # type: ignore[arg-type]
    except ValueError as err:
        raise t.error(None, str(err)) from None


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'expected a list of header names such as ["From", "To"], got {value!r}')
    return tuple(value)


__all__ = ["read_content"]
