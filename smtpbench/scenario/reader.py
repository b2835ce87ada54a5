"""Reading one TOML table with types checked, keys tracked and errors pointing at the key."""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from smtpbench.scenario.errors import ScenarioError

T = TypeVar("T")

# A bare TOML key, or one with the array index we add ourselves: load.stages[1].rate.
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+(?:\[\d+\])*$")


def key_path(prefix: str, key: str) -> str:
    """``load`` + ``rate`` -> ``load.rate``; keys that TOML would quote are quoted."""
    part = key if _BARE_KEY.match(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{prefix}.{part}" if prefix else part


def describe(value: object) -> str:
    """A value the way the file had it, with its TOML type: ``'fast' (string)``."""
    return f"{value!r} ({toml_type(value)})"


def toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime.date | datetime.time):
        return "date/time"
    return type(value).__name__


class Table:
    """A TOML table being read: every getter marks its key as known, ``finish`` rejects the rest."""

    def __init__(self, data: Mapping[str, object], path: str, file: str | None) -> None:
        self.data = data
        self.path = path
        self.file = file
        self._known: list[str] = []

    def error(self, key: str | None, message: str) -> ScenarioError:
        path = key_path(self.path, key) if key is not None else self.path or None
        return ScenarioError(message, file=self.file, key=path)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        self._known.append(key)
        return self.data.get(key)

    def get(
        self,
        key: str,
        default: T,
        convert: Callable[[object], T],
    ) -> T:
        """``convert(value)``, or ``default`` when absent; errors name the key."""
        self._known.append(key)
        if key not in self.data:
            return default
        return self.convert(key, self.data[key], convert)

    def convert(self, key: str, value: object, convert: Callable[[object], T]) -> T:
        try:
            return convert(value)
        except ValueError as error:
            raise self.error(key, str(error)) from None

    def table(self, key: str) -> Table:
        """The sub-table ``key`` (empty when absent)."""
        self._known.append(key)
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {describe(value)}")
        return Table(value, key_path(self.path, key), self.file)

    def finish(self, known: Iterable[str] = ()) -> None:
        """Reject every key no getter asked for, suggesting the closest known one."""
        names = [*self._known, *known]
        for key in self.data:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"in [{self.path}]" if self.path else "at the top level"
                known_list = ", ".join(sorted(set(names)))
                raise self.error(key, f"unknown key {where}{hint} (known: {known_list})")


# Converters: each takes the raw TOML value and raises ValueError saying what was expected.


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    return value


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def as_int(least: int, most: int | None = None) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {describe(value)}")
        if value < least or (most is not None and value > most):
            bounds = f"between {least} and {most}" if most is not None else f"at least {least}"
            raise ValueError(f"expected a whole number {bounds}, got {value}")
        return value

    return convert


def one_of(*choices: str, upper: bool = False) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = as_str(value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            listed = " or ".join(repr(c) for c in choices)
            raise ValueError(f"expected {listed}, got {value!r}")
        return text

    return convert


def positive(convert: Callable[[object], float], what: str) -> Callable[[object], float]:
    """``convert`` and then insist on a value above zero."""

    def checked(value: object) -> float:
        result = convert(value)
        if result <= 0:
            raise ValueError(f"{what} must be above 0, got {value!r}")
        return result

    return checked


def numeric(
    parse: Callable[[str | int | float], float], expected: str
) -> Callable[[object], float]:
    """Guard a ``smtpbench.units`` parser against TOML values it does not take.

    Arrays, tables and dates are not numbers; ``inf`` and ``nan`` are valid TOML
    floats that would make a run endless or meaningless.
    """

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected {expected}, got {describe(value)}")
        result = parse(value)
        if not math.isfinite(result):
            raise ValueError(f"expected {expected}, got {value!r}")
        return result

    return convert


def require(table: Table, key: str, convert: Callable[[object], T], why: str) -> T:
    """A key that must be there; ``why`` says what it is for, in the error."""
    if not table.has(key):
        table.raw(key)
        raise table.error(key, f"missing: {why}")
    return table.get(key, None, convert)  # type: ignore[arg-type]
