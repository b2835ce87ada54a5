"""One run split between several worker processes: which sessions each one starts.

Every worker computes the whole schedule, identically (same rate profile, same
Poisson seed), and takes every N-th arrival of it: worker i starts arrivals i,
i+N, i+2N, ... So the workers' arrivals interleave, and together they are
exactly the arrivals a single process would start, at the same times. Session
numbers stay those of the whole schedule (i + k*N), so address templates and
Message-IDs never collide between workers.

The run's limits are split so that they add up to the whole: the session count
(worker i gets the numbers below it that are its own), the cap on sessions in
flight, the backlog and the closed model's concurrency (as evenly as possible).
There are never more workers than sessions in flight allowed, so a cap of 1
stays a cap of 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpbench.engine.runner import Schedule
    from smtpbench.scenario import Load


def even_part(total: int, index: int, count: int) -> int:
    """Part ``index`` of ``total`` split in ``count`` parts that differ by at most one."""
    return total // count + (1 if index < total % count else 0)


def worker_count(load: Load, requested: int) -> int:
    """How many workers a load can use: at most ``requested``, and never more than the
    sessions allowed in flight at once or the sessions to start."""
    limit = load.max_concurrency if load.mode == "rate" else load.concurrency
    if load.sessions is not None:
        limit = min(limit, load.sessions)
    return max(1, min(requested, limit))


@dataclass(frozen=True, slots=True)
class Share:
    """Worker ``index`` of ``count``; ``Share()`` is the whole run."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"no worker {self.index} of {self.count}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def number(self, k: int) -> int:
        """The run-wide number of this worker's k-th session."""
        return self.index + k * self.count

    def sessions(self, total: int) -> int:
        """How many of the run's first ``total`` sessions are this worker's."""
        return max(0, -(-(total - self.index) // self.count))

    def load(self, load: Load) -> Load:
        """This worker's part of the limits; the rate and the duration stay whole (the
        schedule itself is shared out by ``schedule``)."""
        if self.whole:
            return load
        changes: dict[str, int] = {}
        if load.sessions is not None:
            changes["sessions"] = self.sessions(load.sessions)
        if load.mode == "rate":
            changes["max_concurrency"] = even_part(load.max_concurrency, self.index, self.count)
            changes["backlog"] = even_part(load.backlog, self.index, self.count)
        else:
            changes["concurrency"] = even_part(load.concurrency, self.index, self.count)
        return dataclasses.replace(load, **changes)

    def concurrency(self, total: int) -> int:
        """This worker's part of a closed model's live concurrency (the dashboard's + and
        -), at least one session per worker."""
        return max(1, even_part(total, self.index, self.count))

    def schedule(self, schedule: Schedule) -> Schedule:
        return schedule if self.whole else ShareSchedule(schedule, self)


class ShareSchedule:
    """Every ``count``-th due time of a schedule, starting at the ``index``-th.

    The arrivals skipped are only counted, never waited for: the wrapped
    schedule computes times from counts, so skipping ahead at once and changing
    the rate factor later gives the same times as taking them one by one."""

    __slots__ = ("_count", "_inner")

    def __init__(self, inner: Schedule, share: Share) -> None:
        self._inner = inner
        self._count = share.count
        for _ in range(share.index):
            inner.next_due()

    @property
    def factor(self) -> float:
        return self._inner.factor

    def peek(self) -> float:
        return self._inner.peek()

    def next_due(self) -> float:
        due = self._inner.next_due()
        for _ in range(self._count - 1):
            self._inner.next_due()
        return due

    def rate_at(self, t: float) -> float:
        return self._inner.rate_at(t) / self._count

    def skip_before(self, t: float) -> int:
        """The arrivals of this share among those the schedule skips, then on to the next
        of its own (workers that skip at different moments may part ways there: only
        when they are all far behind, dropping)."""
        skipped = self._inner.skip_before(t)
        if skipped == 0:
            return 0
        behind = skipped % self._count
        for _ in range((self._count - behind) % self._count):
            self._inner.next_due()
        return -(-skipped // self._count)

    def set_factor(self, factor: float, at: float) -> None:
        self._inner.set_factor(factor, at)
