"""Which rate to try next: a ramp in even steps, then, once a step broke, bisection
between the highest rate that held and the lowest that did not. Pure: it is told each
step's outcome and answers with the next rate, or ``None`` when the search is over."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ramp:
    """The rates to try: ``start``, ``start + step``, ... up to ``top`` (the last step is
    ``top`` itself), then ``refine`` bisections of the bracket a broken step leaves."""

    start: float
    step: float
    top: float
    refine: int = 0

    def __post_init__(self) -> None:
        if not self.start > 0:
            raise ValueError(f"the first rate must be above 0/s, got {self.start:g}/s")
        if not self.step > 0:
            raise ValueError(f"the step must be above 0/s, got {self.step:g}/s")
        if self.top < self.start:
            raise ValueError(
                f"the highest rate ({self.top:g}/s) is below the first ({self.start:g}/s)"
            )
        if self.refine < 0:
            raise ValueError(f"the number of bisections cannot be negative, got {self.refine}")

    @property
    def ramp_steps(self) -> int:
        """Steps of the ramp alone (without bisections)."""
        return (
            math.floor((self.top - self.start) / self.step + 1e-9)
            + 1
            + (0 if _on_grid(self) else 1)
        )

    @property
    def most_steps(self) -> int:
        return self.ramp_steps + self.refine

    def rate(self, index: int) -> float:
        """The ramp's ``index``-th rate (from 0)."""
        return min(self.top, self.start + index * self.step)


def _on_grid(ramp: Ramp) -> bool:
    """Whether the top is a whole number of steps above the start."""
    steps = (ramp.top - ramp.start) / ramp.step
    return abs(steps - round(steps)) < 1e-9


@dataclass(slots=True)
class Search:
    """The state of one search; ``next_rate`` after each ``record``."""

    ramp: Ramp
    held: float | None = None  # the highest rate that held
    broke: float | None = None  # the lowest rate that did not
    tried: list[tuple[float, bool]] = field(default_factory=list)
    _ramp_index: int = 0
    _bisections: int = 0

    def next_rate(self) -> float | None:
        """The next rate to hold, or ``None``: the bracket is found (and refined as far as
        asked), the first step already broke, or the top of the ramp held."""
        if self.broke is None:
            if self._ramp_index >= self.ramp.ramp_steps:
                return None  # the top held
            return self.ramp.rate(self._ramp_index)
        if self.held is None or self._bisections >= self.ramp.refine:
            return None
        return (self.held + self.broke) / 2

    def record(self, rate: float, held: bool) -> None:
        """The outcome of the step just held at ``rate``."""
        self.tried.append((rate, held))
        bisecting = self.broke is not None
        if bisecting:
            self._bisections += 1
        else:
            self._ramp_index += 1
        if held:
            self.held = rate if self.held is None else max(self.held, rate)
        else:
            self.broke = rate if self.broke is None else min(self.broke, rate)

    @property
    def top_held(self) -> bool:
        return self.broke is None and self.held is not None and self.held >= self.ramp.top
