"""Log-linear latency histograms on numpy, HdrHistogram style.

Each power of two from 1 microsecond up is split into ``SUB_BUCKETS`` equal
buckets, so a bucket is at most 1/128 of its lower bound wide. A percentile is
reported as the middle of its bucket, clamped to the exact minimum and maximum
seen, so it is within 0.4% of the true sample (the promise is 1%) and never
above the max. Values under 1 us share bucket 0; the top bucket (2^42 us, about
51 days) collects anything longer.

Counts are int64 arrays, so histograms from workers, processes and machines
merge exactly by adding them. Many histograms live side by side as rows of one
2-D array (``HistogramSet``) so that a flush is a single ``np.bincount``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SUB_BUCKETS = 128
OCTAVES = 42
BUCKETS = 1 + OCTAVES * SUB_BUCKETS
UNIT = 1e-6  # seconds per histogram unit: the smallest resolved value
RELATIVE_ERROR = 1 / (2 * SUB_BUCKETS)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def bucket_of(seconds: npt.ArrayLike) -> IntArray:
    """Bucket index of each value in seconds (vectorised)."""
    units = np.asarray(seconds, dtype=np.float64) / UNIT
    mantissa, exponent = np.frexp(units)  # units = mantissa * 2**exponent, mantissa in [0.5, 1)
    sub = ((mantissa * 2.0 - 1.0) * SUB_BUCKETS).astype(np.int64)
    index = (exponent.astype(np.int64) - 1) * SUB_BUCKETS + sub + 1
    index[units < 1.0] = 0
    np.minimum(index, BUCKETS - 1, out=index)
    return index


def _bucket_bounds() -> tuple[FloatArray, FloatArray]:
    index = np.arange(1, BUCKETS)
    octave, sub = np.divmod(index - 1, SUB_BUCKETS)
    lower = np.ldexp(1.0 + sub / SUB_BUCKETS, octave) * UNIT
    upper = np.ldexp(1.0 + (sub + 1) / SUB_BUCKETS, octave) * UNIT
    return np.concatenate(([0.0], lower)), np.concatenate(([UNIT], upper))


BUCKET_LOWER, BUCKET_UPPER = _bucket_bounds()
BUCKET_MIDDLE = (BUCKET_LOWER + BUCKET_UPPER) / 2


@dataclass(frozen=True, slots=True)
class Histogram:
    """One latency distribution: bucket counts plus the exact count, sum, min and max."""

    counts: IntArray
    total: float  # sum of the values in seconds, for the mean
    minimum: float  # inf when empty
    maximum: float  # -inf when empty

    @classmethod
    def of(cls, seconds: npt.ArrayLike) -> Histogram:
        values = np.asarray(seconds, dtype=np.float64)
        counts = np.bincount(bucket_of(values), minlength=BUCKETS).astype(np.int64)
        if values.size == 0:
            return cls(counts, 0.0, np.inf, -np.inf)
        return cls(counts, float(values.sum()), float(values.min()), float(values.max()))

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        count = self.count
        return self.total / count if count else float("nan")

    def percentile(self, q: float) -> float:
        return float(self.percentiles([q])[0])

    def percentiles(self, qs: Sequence[float]) -> FloatArray:
        """Nearest-rank percentiles (``np.percentile(..., method="inverted_cdf")``);
        NaN when empty."""
        return percentiles_of(
            self.counts[None, :],
            np.array([self.minimum]),
            np.array([self.maximum]),
            qs,
        )[0]

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(
            self.counts + other.counts,
            self.total + other.total,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
        )


def percentiles_of(
    counts: IntArray, minimum: FloatArray, maximum: FloatArray, qs: Sequence[float]
) -> FloatArray:
    """Percentiles of every row of a 2-D count array at once: shape (rows, len(qs))."""
    cumulative = np.cumsum(counts, axis=1)
    totals = cumulative[:, -1]
    q = np.asarray(qs, dtype=np.float64)
    # Nearest rank: the smallest value with at least ceil(q/100 * n) samples at or below it.
    ranks = np.maximum(np.ceil(q[None, :] / 100.0 * totals[:, None]), 1)
    index = np.empty(ranks.shape, dtype=np.int64)
    for row in range(counts.shape[0]):
        index[row] = np.searchsorted(cumulative[row], ranks[row], side="left")
    np.minimum(index, BUCKETS - 1, out=index)
    values = BUCKET_MIDDLE[index]
    values = np.clip(values, minimum[:, None], maximum[:, None])
    values[totals == 0] = np.nan
    return values


class HistogramSet:
    """Rows of histograms sharing one bucket layout; the recorder's aggregate store."""

    __slots__ = ("counts", "maximum", "minimum", "total")

    def __init__(self, rows: int) -> None:
        self.counts: IntArray = np.zeros((rows, BUCKETS), dtype=np.int64)
        self.total: FloatArray = np.zeros(rows)
        self.minimum: FloatArray = np.full(rows, np.inf)
        self.maximum: FloatArray = np.full(rows, -np.inf)

    @property
    def rows(self) -> int:
        return self.counts.shape[0]

    def add_samples(self, rows: IntArray, seconds: FloatArray) -> tuple[IntArray, IntArray]:
        """Adds samples (row of each, value of each); returns this batch's own counts,
        sparse: the flat indices (into ``counts.ravel()``) of the buckets it touched, in
        order, and its count in each. A batch touches a few hundred of the ~100k buckets,
        so this costs a fraction of adding a dense array of them."""
        flat = rows * BUCKETS + bucket_of(seconds)
        index, batch = np.unique(flat, return_counts=True)
        self.counts.ravel()[index] += batch
        self.total += np.bincount(rows, weights=seconds, minlength=self.rows)
        low = np.full(self.rows, np.inf)
        high = np.full(self.rows, -np.inf)
        np.minimum.at(low, rows, seconds)
        np.maximum.at(high, rows, seconds)
        np.minimum(self.minimum, low, out=self.minimum)
        np.maximum(self.maximum, high, out=self.maximum)
        return index, batch

    def histogram(self, row: int) -> Histogram:
        return Histogram(
            self.counts[row].copy(),
            float(self.total[row]),
            float(self.minimum[row]),
            float(self.maximum[row]),
        )

    def copy(self) -> HistogramSet:
        other = HistogramSet.__new__(HistogramSet)
        other.counts = self.counts.copy()
        other.total = self.total.copy()
        other.minimum = self.minimum.copy()
        other.maximum = self.maximum.copy()
        return other

    def merge(self, other: HistogramSet) -> None:
        self.counts += other.counts
        self.total += other.total
        np.minimum(self.minimum, other.minimum, out=self.minimum)
        np.maximum(self.maximum, other.maximum, out=self.maximum)

    def percentiles(self, qs: Sequence[float]) -> FloatArray:
        return percentiles_of(self.counts, self.minimum, self.maximum, qs)
