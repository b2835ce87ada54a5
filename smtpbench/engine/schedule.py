"""When each session is due: pure functions of the rate profile, no clocks, no sleeping.

The engine asks ``Pacer.next_due()`` for the next session's offset from the
start (in schedule time, which excludes pauses) and sleeps until ``t0 + offset``:
always against absolute time, never a chain of relative sleeps, so a late
wake-up never shifts the sessions after it.

The n-th session is due when the expected number of arrivals, the integral of
the rate over time, reaches n (uniform arrivals) or a running sum of unit
exponential gaps (Poisson arrivals, the same process time-warped). Rates ramp
linearly within a stage, so the integral is a quadratic and its inverse has a
closed form; nothing is found by stepping through time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True, slots=True)
class RateProfile:
    """A piecewise-linear rate: ``start_rate`` at t=0, then each stage ramps linearly to its
    ``rate`` over its ``duration``; after the last stage the rate stays where it ended."""

    start_rate: float
    stages: tuple[tuple[float, float], ...] = ()  # (duration, rate at the stage's end)
    _cache: tuple[tuple[float, float, float, float], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", tuple(self._build_pieces()))

    @classmethod
    def constant(cls, rate: float) -> RateProfile:
        return cls(rate, ())

    def _pieces(self) -> Sequence[tuple[float, float, float, float]]:
        return self._cache

    def _build_pieces(self) -> list[tuple[float, float, float, float]]:
        """(start time, duration, start rate, slope) of each stage, then the open tail."""
        pieces = []
        t, rate = 0.0, self.start_rate
        for duration, end_rate in self.stages:
            slope = (end_rate - rate) / duration if duration > 0 else 0.0
            pieces.append((t, duration, rate, slope))
            t += duration
            rate = end_rate
        pieces.append((t, math.inf, rate, 0.0))
        return pieces

    def rate_at(self, t: float) -> float:
        for start, duration, rate, slope in self._pieces():
            if t < start + duration:
                return rate + slope * max(0.0, t - start)
        return self._pieces()[-1][2]

    def cumulative(self, t: float) -> float:
        """Expected arrivals in [0, t]."""
        total = 0.0
        for start, duration, rate, slope in self._pieces():
            if t <= start:
                break
            # A stage of no duration (a step in the rate) adds nothing; those after it do.
            span = min(t - start, duration)
            total += rate * span + slope * span * span / 2
        return total

    def time_of(self, arrivals: float) -> float:
        """The inverse of ``cumulative``: when the expected count reaches ``arrivals``;
        ``inf`` if the rate falls to zero before it does."""
        remaining = arrivals
        for start, duration, rate, slope in self._pieces():
            in_piece = (
                rate * duration + slope * duration * duration / 2
                if duration != math.inf
                else math.inf
            )
            # The tolerance keeps a count that lands on a stage's end, within
            # rounding, in that stage rather than in a following one at rate 0.
            if remaining <= in_piece + 1e-9 * max(1.0, in_piece):
                span = _solve_ramp(rate, slope, remaining)
                return start + min(span, duration)
            remaining -= in_piece
        return math.inf


def _solve_ramp(rate: float, slope: float, count: float) -> float:
    """Smallest t >= 0 with rate*t + slope*t^2/2 == count, written to stay stable as
    slope goes to zero: t = 2c / (r + sqrt(r^2 + 2*slope*c))."""
    if count <= 0:
        return 0.0
    disc = rate * rate + 2 * slope * count
    if disc < 0:
        return math.inf
    denominator = rate + math.sqrt(disc)
    return 2 * count / denominator if denominator > 0 else math.inf


class Pacer:
    """Hands out due times in order; the live rate factor re-anchors the curve where it
    changes, so sessions already due keep their times and later ones follow the new rate."""

    __slots__ = (
        "_anchor_count",
        "_anchor_time",
        "_arrivals",
        "_factor",
        "_next_count",
        "_rng",
        "profile",
    )

    def __init__(
        self,
        profile: RateProfile,
        arrivals: Literal["uniform", "poisson"] = "uniform",
        seed: int | None = None,
    ) -> None:
        self.profile = profile
        self._arrivals = arrivals
        self._rng = random.Random(seed)
        self._factor = 1.0
        self._anchor_time = 0.0
        self._anchor_count = 0.0
        # Uniform arrivals start at t=0; Poisson's first arrival is one gap in.
        self._next_count = self._gap() if arrivals == "poisson" else 0.0

    def _gap(self) -> float:
        return self._rng.expovariate(1.0) if self._arrivals == "poisson" else 1.0

    @property
    def factor(self) -> float:
        return self._factor

    def rate_at(self, t: float) -> float:
        return self.profile.rate_at(t) * self._factor

    def _time_of(self, count: float) -> float:
        base = self.profile.cumulative(self._anchor_time)
        if self._factor <= 0:
            return math.inf
        return self.profile.time_of(base + (count - self._anchor_count) / self._factor)

    def peek(self) -> float:
        """The next session's due time, without taking it."""
        return max(self._time_of(self._next_count), self._anchor_time)

    def next_due(self) -> float:
        due = self.peek()
        self._next_count += self._gap()
        return due

    def skip_before(self, t: float) -> int:
        """Takes at once every due time before schedule time ``t``: how many there were.
        For a run too far behind to start them (they are dropped), at any rate: the
        count is worked out, not stepped through. Poisson arrivals in that span are a
        Poisson number, and the process starts afresh after it (it has no memory)."""
        if self.peek() >= t or self._factor <= 0:
            return 0
        base = self.profile.cumulative(self._anchor_time)
        target = self._anchor_count + (self.profile.cumulative(t) - base) * self._factor
        if self._arrivals == "poisson":
            seed = self._rng.getrandbits(64)
            count = 1 + int(
                np.random.default_rng(seed).poisson(max(0.0, target - self._next_count))
            )
            self._next_count = target + self._gap()
            return count
        count = max(1, math.ceil(target - self._next_count))
        self._next_count += count
        return count

    def set_factor(self, factor: float, at: float) -> None:
        """From schedule time ``at`` on, the rate is the profile's times ``factor``."""
        if factor < 0:
            raise ValueError("a rate factor cannot be negative")
        base = self.profile.cumulative(self._anchor_time)
        current = self._anchor_count + (self.profile.cumulative(at) - base) * self._factor
        self._anchor_time = at
        self._anchor_count = current
        self._factor = factor
