"""Counts and sizes that vary per session or message: ``IntRange`` and ``SizeDistribution``."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Final, Literal

from smtpbench.units import parse_size

MIN_MESSAGE_SIZE: Final = 512
"""The smallest message size a scenario may ask for: room for a header block of one recipient."""

MAX_MESSAGE_SIZE: Final = 1024**3
"""The largest: each message is built in memory."""

DEFAULT_LOGNORMAL_MAX: Final = 10_240_000
"""Postfix's default ``message_size_limit``: a long tail above it would turn into rejections."""

SizeKind = Literal["fixed", "uniform", "lognormal", "choice"]
SIZE_KINDS: Final[tuple[SizeKind, ...]] = ("fixed", "uniform", "lognormal", "choice")


@dataclass(frozen=True, slots=True)
class IntRange:
    """A whole number picked uniformly from ``low..high``, both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"expected 0 <= low <= high, got {self.low}..{self.high}")

    @classmethod
    def parse(cls, value: int | str) -> IntRange:
        """From ``3``, ``"3"`` or ``"1..5"``."""
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f'expected a count such as 3 or a range such as "1..5", got {value!r}')
        if isinstance(value, int):
            low = high = value
        else:
            low_text, dots, high_text = value.strip().partition("..")
            try:
                low = int(low_text)
                high = int(high_text) if dots else low
            except ValueError:
                raise ValueError(
                    f'expected a count such as 3 or a range such as "1..5", got {value!r}'
                ) from None
        if low < 0:
            raise ValueError(f"a count cannot be negative, got {value!r}")
        if high < low:
            raise ValueError(f"a range goes from low to high, got {value!r}")
        return cls(low, high)

    def pick(self, rng: random.Random) -> int:
        return self.low if self.low == self.high else rng.randint(self.low, self.high)

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"


@dataclass(frozen=True, slots=True)
class SizeDistribution:
    """Message sizes in bytes. Build one with the class methods, which name what each kind needs.

    - ``fixed``: always ``low`` (== ``high``);
    - ``uniform``: any size in ``low..high``;
    - ``lognormal``: ``median * exp(sigma * N(0, 1))``, clamped to ``low..high`` —
      the long-tailed shape real mail sizes have;
    - ``choice``: one of ``sizes``, with ``weights`` (equal when not given).
    """

    kind: SizeKind
    low: int
    high: int
    median: int = 0
    sigma: float = 0.0
    sizes: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    _cumulative: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SIZE_KINDS:
            raise ValueError(f"unknown size distribution {self.kind!r}")
        for size in (self.low, self.high, *self.sizes):
            _check_size(size)
        if self.low > self.high:
            raise ValueError(f"min {self.low} is larger than max {self.high}")
        if self.kind == "fixed" and self.low != self.high:
            raise ValueError("a fixed size has low == high")
        if self.kind == "lognormal":
            if not self.low <= self.median <= self.high:
                raise ValueError(f"median {self.median} lies outside {self.low}..{self.high}")
            if not (math.isfinite(self.sigma) and self.sigma > 0):
                raise ValueError(f"sigma must be a positive number, got {self.sigma!r}")
        if self.kind == "choice":
            if not self.sizes:
                raise ValueError("a choice needs at least one size")
            if len(self.weights) != len(self.sizes):
                raise ValueError(f"{len(self.sizes)} sizes but {len(self.weights)} weights")
            if any(not (math.isfinite(w) and w >= 0) for w in self.weights) or not any(
                self.weights
            ):
                raise ValueError("weights must be non-negative numbers, not all zero")
            if (self.low, self.high) != (min(self.sizes), max(self.sizes)):
                raise ValueError("low and high of a choice are its smallest and largest size")
            # Cumulative weights once, so that each sample is one bisection.
            object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.weights)))

    @classmethod
    def fixed(cls, size: int) -> SizeDistribution:
        return cls("fixed", size, size)

    @classmethod
    def uniform(cls, low: int, high: int) -> SizeDistribution:
        return cls("uniform", low, high)

    @classmethod
    def lognormal(
        cls,
        median: int,
        sigma: float,
        *,
        low: int = MIN_MESSAGE_SIZE,
        high: int = DEFAULT_LOGNORMAL_MAX,
    ) -> SizeDistribution:
        return cls("lognormal", low, high, median=median, sigma=float(sigma))

    @classmethod
    def choice(
        cls, sizes: tuple[int, ...], weights: tuple[float, ...] | None = None
    ) -> SizeDistribution:
        sizes = tuple(sizes)
        weights = tuple(float(w) for w in weights) if weights is not None else (1.0,) * len(sizes)
        low, high = (min(sizes), max(sizes)) if sizes else (MIN_MESSAGE_SIZE, MIN_MESSAGE_SIZE)
        return cls("choice", low, high, sizes=sizes, weights=weights)

    def sample(self, rng: random.Random) -> int:
        """A size in bytes, never below ``MIN_MESSAGE_SIZE``."""
        kind = self.kind
        if kind == "fixed":
            return self.low
        if kind == "uniform":
            return rng.randint(self.low, self.high)
        if kind == "lognormal":
            value = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
            return max(self.low, min(self.high, round(value)))
        total = self._cumulative[-1]
        index = bisect.bisect_right(self._cumulative, rng.random() * total)
        return self.sizes[min(index, len(self.sizes) - 1)]

    @property
    def mean(self) -> float:
        """The expected size (ignoring the clamping of a lognormal tail), for estimates."""
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        if self.kind == "lognormal":
            return min(self.high, self.median * math.exp(self.sigma**2 / 2))
        if self.kind == "choice":
            total = self._cumulative[-1]
            return sum(s * w for s, w in zip(self.sizes, self.weights, strict=True)) / total
        return float(self.low)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return format_size(self.low)
        if self.kind == "uniform":
            return f"uniform {format_size(self.low)}..{format_size(self.high)}"
        if self.kind == "lognormal":
            return (
                f"lognormal median {format_size(self.median)} sigma {self.sigma:g} "
                f"({format_size(self.low)}..{format_size(self.high)})"
            )
        parts = [
            f"{format_size(s)}" + (f" x{w:g}" if len(set(self.weights)) > 1 else "")
            for s, w in zip(self.sizes, self.weights, strict=True)
        ]
        return "one of " + ", ".join(parts)


def format_size(size: int) -> str:
    """The exact size in the largest unit that divides it: ``2KiB``, ``10MB``, ``1500``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_message_size(value: object) -> int:
    """``parse_size`` plus the bounds a message size must keep."""
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise ValueError(f"expected a size such as 512, 10KiB or 1MB, got {value!r}")
    size = parse_size(value)
    _check_size(size)
    return size


def _check_size(size: int) -> None:
    if not MIN_MESSAGE_SIZE <= size <= MAX_MESSAGE_SIZE:
        raise ValueError(
            f"a message size must lie between {format_size(MIN_MESSAGE_SIZE)} "
            f"(room for the headers) and {format_size(MAX_MESSAGE_SIZE)}, got {format_size(size)}"
        )
