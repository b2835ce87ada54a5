"""Human units for durations, sizes, rates and shares, as written in scenarios and flags.

Every parser raises ``ValueError`` with a message that says what was expected;
callers add the file, key or flag name.
"""

from __future__ import annotations

import re

_DURATION_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ%/]*)\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``"50ms"``, ``"1.5s"``, ``"5m"``, ``"1h30m"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 500ms, 10s or 5m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    text = value.strip()
    parts = re.findall(r"([0-9]*\.?[0-9]+)\s*(us|µs|ms|min|s|m|h)", text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text.replace(" ", ""):
        return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"expected a duration such as 500ms, 10s or 5m, got {value!r}") from None
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from ``"1KiB"``, ``"20kB"``, ``"2MiB"`` or a bare number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512, 10KiB or 1MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return value
    match = _NUMBER_UNIT.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 512, 10KiB or 1MB, got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_share(value: str | int | float) -> float:
    """A probability in [0, 1] from ``"1%"``, ``"0.5%"`` or a bare fraction like ``0.01``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a share such as 1% or 0.01, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected a share such as 1% or 0.01, got {value!r}") from None
    else:
        share = float(value)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a share must lie between 0% and 100%, got {value!r}")
    return share


def parse_rate(value: str | int | float) -> float:
    """Sessions per second from ``"300"``, ``"300/s"``, ``"1200/m"`` or ``"50000/h"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 300/s or 1200/m, got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        text = value.strip().replace(" ", "")
        per = 1.0
        for suffix, seconds in (("/s", 1.0), ("/m", 60.0), ("/min", 60.0), ("/h", 3600.0)):
            if text.endswith(suffix):
                text, per = text[: -len(suffix)], seconds
                break
        try:
            rate = float(text) / per
        except ValueError:
            raise ValueError(f"expected a rate such as 300/s or 1200/m, got {value!r}") from None
    if rate < 0:
        raise ValueError(f"a rate cannot be negative, got {value!r}")
    return rate


def format_duration(seconds: float) -> str:
    """Short human form with three significant figures: ``850us``, ``4.20ms``, ``1.30s``."""
    if seconds != seconds:  # NaN: no data
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    # To the nanosecond first, as the results files store it: a value read back from
    # them prints as it did before it was written (192.5us, not 192us here and 193us there).
    seconds = round(seconds, 9)
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        ms = seconds * 1e3
        return f"{ms:.2f}ms" if ms < 10 else f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{rest:02.0f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes):02d}m"


def format_clock(seconds: float) -> str:
    """``HH:MM:SS`` for elapsed and remaining time, to the nearest second (a 20 s run
    that took 19.98 s reads 00:00:20)."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
