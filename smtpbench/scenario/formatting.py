"""Exact human forms of durations, rates and shares: each reads back to the same float.

Used to write scenarios back as TOML and to summarize them; when no short form
reads back exactly, the plain number is used, because a scenario written back
must run the same.
"""

from __future__ import annotations

from collections.abc import Callable

from smtpbench.units import parse_duration, parse_rate, parse_share


def duration_text(seconds: float) -> str | float:
    """``"20s"``, ``"1m30s"``, ``"50ms"``, or the float itself when nothing shorter is exact."""
    candidates: list[str] = ["0s"] if seconds == 0 else []
    if seconds == int(seconds) and seconds > 0:
        whole = int(seconds)
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
        candidates.append("".join(parts))
    elif seconds > 0:
        candidates += [f"{seconds * 1e3:g}ms", f"{seconds * 1e6:g}us", f"{seconds:g}s"]
    return _first_exact(candidates, seconds, parse_duration)


def rate_text(rate: float) -> str | float:
    """``"300/s"``, ``"30/m"``, ``"5/h"``, or the float itself."""
    candidates = [f"{rate:g}/s"]
    if 0 < rate < 1:
        candidates = [f"{rate * 60:g}/m", f"{rate * 3600:g}/h", *candidates]
    return _first_exact(candidates, rate, parse_rate)


def share_text(share: float) -> str | float:
    """``"5%"``, ``"0.1%"``, or the float itself."""
    return _first_exact([f"{share * 100:g}%"], share, parse_share)


def _first_exact(candidates: list[str], value: float, parse: Callable[[str], float]) -> str | float:
    for text in candidates:
        if "e" in text:  # "1e+06s" reads back, but nobody writes durations like that
            continue
        try:
            if parse(text) == value:
                return text
        except ValueError:
            continue
    return float(value)


def human_duration(seconds: float) -> str:
    """For summaries: the exact short form when there is one, else rounded seconds."""
    text = duration_text(seconds)
    return text if isinstance(text, str) else f"{seconds:.3g}s"


def human_rate(rate: float) -> str:
    text = rate_text(rate)
    return text if isinstance(text, str) else f"{rate:.3g}/s"
