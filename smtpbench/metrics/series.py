"""The per-second time series of a run: counts per interval and per-row p50/p99."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smtpbench.metrics.histogram import FloatArray, IntArray

# Counts per interval, except in_flight, which is the level at the interval's end.
SERIES_COUNTERS = (
    "started",
    "completed",
    "failed",
    "dropped",
    "in_flight",
    "messages_accepted",
    "messages_rejected",
    # Sessions the schedule asked for (pauses excluded): what "started" compares with.
    # -1 in every row of results written before it was kept.
    "scheduled",
)
_COLUMN = {name: index for index, name in enumerate(SERIES_COUNTERS)}


@dataclass(frozen=True, slots=True)
class Series:
    time: FloatArray  # (n,) seconds since start at each interval's end
    counters: IntArray  # (n, len(SERIES_COUNTERS))
    target_rate: FloatArray  # (n,) sessions/s asked for; NaN in the closed model
    p50: FloatArray  # (n, latency rows) seconds; NaN where an interval had no sample
    p99: FloatArray  # (n, latency rows)
    count: IntArray  # (n, latency rows) samples per interval

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def column(self, name: str) -> IntArray:
        return self.counters[:, _COLUMN[name]]

    def rate(self, name: str) -> FloatArray:
        """A counter per second of each interval."""
        widths = np.diff(self.time, prepend=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(widths > 0, self.column(name) / widths, 0.0)


class SeriesBuilder:
    """Appends one row per interval into arrays that grow by doubling."""

    def __init__(self, rows: int, capacity: int = 64) -> None:
        self._rows = rows
        self._n = 0
        self._time = np.zeros(capacity)
        self._counters = np.zeros((capacity, len(SERIES_COUNTERS)), dtype=np.int64)
        self._target = np.zeros(capacity)
        self._p50 = np.zeros((capacity, rows))
        self._p99 = np.zeros((capacity, rows))
        self._count = np.zeros((capacity, rows), dtype=np.int64)

    def _grow(self) -> None:
        def bigger(array: np.ndarray) -> np.ndarray:
            grown = np.zeros((array.shape[0] * 2, *array.shape[1:]), dtype=array.dtype)
            grown[: array.shape[0]] = array
            return grown

        self._time = bigger(self._time)
        self._counters = bigger(self._counters)
        self._target = bigger(self._target)
        self._p50 = bigger(self._p50)
        self._p99 = bigger(self._p99)
        self._count = bigger(self._count)

    def append(
        self,
        time: float,
        counters: Sequence[int] | IntArray,
        target_rate: float,
        p50: FloatArray,
        p99: FloatArray,
        count: IntArray,
    ) -> None:
        if self._n == self._time.shape[0]:
            self._grow()
        n = self._n
        self._time[n] = time
        self._counters[n] = counters
        self._target[n] = target_rate
        self._p50[n] = p50
        self._p99[n] = p99
        self._count[n] = count
        self._n = n + 1

    def __len__(self) -> int:
        return self._n

    def extend(self, rows: Series) -> None:
        """Appends the rows of another series (the same latency rows)."""
        for i in range(len(rows)):
            self.append(
                float(rows.time[i]),
                rows.counters[i],
                float(rows.target_rate[i]),
                rows.p50[i],
                rows.p99[i],
                rows.count[i],
            )

    def view(self) -> Series:
        """The rows so far, sharing the builder's arrays: a row never changes once
        appended, and growing moves the builder to new arrays, so the view stays true."""
        n = self._n
        return Series(
            self._time[:n],
            self._counters[:n],
            self._target[:n],
            self._p50[:n],
            self._p99[:n],
            self._count[:n],
        )

    def freeze(self) -> Series:
        n = self._n
        return Series(
            self._time[:n].copy(),
            self._counters[:n].copy(),
            self._target[:n].copy(),
            self._p50[:n].copy(),
            self._p99[:n].copy(),
            self._count[:n].copy(),
        )


def series_rows(series: Series, start: int) -> Series:
    """A copy of the rows from ``start`` on."""
    return Series(
        series.time[start:].copy(),
        series.counters[start:].copy(),
        series.target_rate[start:].copy(),
        series.p50[start:].copy(),
        series.p99[start:].copy(),
        series.count[start:].copy(),
    )
