"""Histograms against numpy on the raw samples: percentiles within 1% (the promise), the
bucket resolution the module states (128 buckets per power of two, so 1/256 either side),
and the exact count, sum, mean, minimum and maximum. Tolerances are written here, never
taken from the module under test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from smtpbench.metrics.histogram import (
    BUCKET_LOWER,
    BUCKET_UPPER,
    BUCKETS,
    UNIT,
    Histogram,
    HistogramSet,
    _bucket_bounds,
    bucket_of,
)

QUANTILES = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)
PROMISE = 0.01  # percentiles within 1% of the true sample
RESOLUTION = 1 / 256  # half of a bucket 1/128 of its lower bound wide
# From 1 us to beyond an hour, as latencies in seconds.
latencies = arrays(
    np.float64,
    st.integers(min_value=1, max_value=400),
    elements=st.floats(min_value=1e-6, max_value=4000.0, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(latencies)
def test_percentiles_match_numpy_within_one_percent(samples: np.ndarray) -> None:
    histogram = Histogram.of(samples)
    ours = histogram.percentiles(QUANTILES)
    exact = np.percentile(samples, QUANTILES, method="inverted_cdf")
    np.testing.assert_allclose(ours, exact, rtol=PROMISE)
    np.testing.assert_allclose(ours, exact, rtol=RESOLUTION * 1.0001)
    assert ours[-1] <= samples.max()  # never above the max, whatever the rounding
    assert ours[0] >= samples.min()


@given(latencies, latencies)
def test_histograms_merge_exactly_by_addition(a: np.ndarray, b: np.ndarray) -> None:
    merged = Histogram.of(a) + Histogram.of(b)
    whole = Histogram.of(np.concatenate([a, b]))
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.minimum == whole.minimum and merged.maximum == whole.maximum
    assert np.isclose(merged.total, whole.total)
    np.testing.assert_array_equal(merged.percentiles(QUANTILES), whole.percentiles(QUANTILES))


def test_buckets_cover_one_microsecond_to_beyond_an_hour_without_gaps() -> None:
    assert np.all(BUCKET_LOWER[1:] == BUCKET_UPPER[:-1])
    widths = (BUCKET_UPPER - BUCKET_LOWER)[1:] / BUCKET_LOWER[1:]
    assert widths.max() <= 2 * RESOLUTION + 1e-12
    assert BUCKET_UPPER[-1] > 3600
    assert bucket_of([UNIT])[0] == 1
    values = np.array([1e-6, 3.3e-5, 0.0123, 1.0, 59.9, 3600.0])
    index = bucket_of(values)
    assert np.all(BUCKET_LOWER[index] <= values) and np.all(values < BUCKET_UPPER[index])


def test_empty_histogram_reports_nan_not_zero() -> None:
    histogram = Histogram.of([])
    assert histogram.count == 0
    assert np.isnan(histogram.percentile(99))


def test_histogram_set_rows_match_single_histograms() -> None:
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 5, 10_000)
    values = rng.lognormal(-6, 1.5, 10_000)
    hset = HistogramSet(5)
    half = 5_000
    hset.add_samples(rows[:half], values[:half])
    hset.add_samples(rows[half:], values[half:])
    for row in range(5):
        single = Histogram.of(values[rows == row])
        assert np.array_equal(hset.counts[row], single.counts)
        assert hset.histogram(row).maximum == single.maximum
        np.testing.assert_array_equal(hset.percentiles([50, 99])[row], single.percentiles([50, 99]))


@settings(max_examples=100, deadline=None)
@given(latencies)
def test_count_sum_mean_min_and_max_are_exact(samples: np.ndarray) -> None:
    histogram = Histogram.of(samples)
    assert histogram.count == samples.size
    assert histogram.total == pytest.approx(float(np.sum(samples)), rel=1e-12)
    assert histogram.mean == pytest.approx(float(np.mean(samples)), rel=1e-12)
    assert histogram.minimum == samples.min() and histogram.maximum == samples.max()


def test_a_histogram_set_keeps_each_rows_exact_sum_min_and_max_across_batches() -> None:
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 4, 3_000)
    values = rng.lognormal(-5, 2.0, 3_000)
    hset = HistogramSet(5)  # row 4 gets nothing
    for batch in np.array_split(np.arange(3_000), 3):
        hset.add_samples(rows[batch], values[batch])
    for row in range(4):
        mine = values[rows == row]
        histogram = hset.histogram(row)
        assert histogram.count == mine.size
        assert histogram.mean == pytest.approx(float(np.mean(mine)), rel=1e-12)
        assert histogram.minimum == mine.min() and histogram.maximum == mine.max()
        exact = np.percentile(mine, QUANTILES, method="inverted_cdf")
        np.testing.assert_allclose(histogram.percentiles(QUANTILES), exact, rtol=PROMISE)
    empty = hset.histogram(4)
    assert empty.count == 0 and empty.minimum == np.inf and empty.maximum == -np.inf
    assert np.all(np.isnan(hset.percentiles([50, 99])[4]))


def test_a_batch_returns_its_own_counts_sparsely() -> None:
    hset = HistogramSet(3)
    hset.add_samples(np.array([0, 0]), np.array([0.001, 0.002]))
    rows = np.array([0, 2, 2, 2])
    values = np.array([0.001, 0.5, 0.5, 0.0001])
    index, counts = hset.add_samples(rows, values)
    dense = np.zeros(3 * BUCKETS, dtype=np.int64)
    dense[index] = counts
    dense = dense.reshape(3, BUCKETS)
    for row in range(3):
        assert np.array_equal(dense[row], Histogram.of(values[rows == row]).counts)
    assert list(index) == sorted(index)


def test_a_copy_is_independent_and_a_merge_adds_everything() -> None:
    a, b = HistogramSet(2), HistogramSet(2)
    a.add_samples(np.array([0, 1]), np.array([0.010, 0.030]))
    b.add_samples(np.array([0, 0]), np.array([0.005, 0.050]))
    before = a.copy()
    a.merge(b)
    assert before.histogram(0).count == 1 and before.histogram(0).maximum == 0.010
    merged = a.histogram(0)
    assert merged.count == 3
    assert merged.total == pytest.approx(0.065)
    assert merged.minimum == 0.005 and merged.maximum == 0.050
    assert a.histogram(1).total == pytest.approx(0.030)
    assert a.rows == 2


def test_an_empty_histogram_has_no_minimum_maximum_or_mean() -> None:
    empty = Histogram.of([])
    assert empty.minimum == np.inf and empty.maximum == -np.inf
    assert np.isnan(empty.mean) and empty.total == 0.0
    assert np.all(np.isnan(empty.percentiles([0, 50, 100])))
    one = Histogram.of([0.25])
    both = empty + one
    assert (both.minimum, both.maximum, both.count) == (0.25, 0.25, 1)
    assert both.percentile(99) == 0.25


def test_each_power_of_two_is_split_into_128_buckets() -> None:
    # From 1 ms (in microseconds, 2^10 = 1024 us): 128 steps of 1/128 across one octave.
    start = 1024 * UNIT
    values = start * (1 + (np.arange(128) + 0.5) / 128)
    index = bucket_of(values)
    assert len(set(index.tolist())) == 128
    assert np.all(np.diff(index) == 1)
    assert bucket_of([2 * start])[0] == index[-1] + 1


def test_values_apart_by_more_than_a_bucket_never_share_one() -> None:
    rng = np.random.default_rng(5)
    values = np.exp(rng.uniform(np.log(1e-6), np.log(3600.0), 5_000))
    assert np.all(bucket_of(values * (1 + 1 / 128 + 1e-9)) > bucket_of(values))


def test_anything_past_the_top_bucket_is_counted_in_it() -> None:
    huge = np.array([1e9, 1e12, np.ldexp(1.0, 45) * UNIT])
    assert np.all(bucket_of(huge) == BUCKETS - 1)
    histogram = Histogram.of(huge)
    assert histogram.counts.shape == (BUCKETS,)
    assert histogram.counts[-1] == 3
    # The top bucket's middle (about 51 days) is below them all: clamped to the minimum.
    assert histogram.percentile(100) == np.ldexp(1.0, 45) * UNIT


def test_values_under_one_microsecond_share_the_first_bucket() -> None:
    assert list(bucket_of([0.0, 1e-9, 0.99e-6])) == [0, 0, 0]
    assert bucket_of([1e-6])[0] == 1
    histogram = Histogram.of([0.0, 0.5e-6])
    assert 0.0 <= histogram.percentile(50) <= 1e-6  # resolved to 1 us, no finer
    assert histogram.percentile(100) == 0.5e-6


def test_percentiles_are_nearest_rank_by_hand() -> None:
    # 1, 2, ..., 10 ms: p50 is the 5th sample, p91 the 10th, p10 the 1st, p0 the minimum.
    histogram = Histogram.of(np.arange(1, 11) * 1e-3)
    got = histogram.percentiles([0, 10, 50, 91, 100])
    np.testing.assert_allclose(got, [1e-3, 1e-3, 5e-3, 10e-3, 10e-3], rtol=RESOLUTION)


def test_rows_of_a_set_get_their_percentiles_at_once() -> None:
    hset = HistogramSet(3)
    hset.add_samples(np.array([0, 0, 0, 2]), np.array([0.001, 0.002, 0.003, 0.7]))
    got = hset.percentiles([50, 100])
    np.testing.assert_allclose(got[0], [0.002, 0.003], rtol=RESOLUTION)
    assert np.all(np.isnan(got[1]))
    np.testing.assert_allclose(got[2], [0.7, 0.7], rtol=RESOLUTION)


def test_counts_are_64_bit_integers_so_merges_stay_exact() -> None:
    assert Histogram.of([0.001, 0.002]).counts.dtype == np.int64
    assert Histogram.of([]).counts.dtype == np.int64
    hset = HistogramSet(2)
    assert hset.counts.dtype == np.int64
    hset.add_samples(np.array([1]), np.array([0.5]))
    assert hset.counts.dtype == np.int64 and hset.histogram(1).counts.dtype == np.int64


def test_a_percentile_in_the_top_bucket_is_its_middle_when_the_samples_span_it() -> None:
    # The top bucket runs from 2^41 * (1 + 127/128) us to 2^42 us (about 51 days).
    middle = (2.0**41 * (1 + 127 / 128) + 2.0**42) / 2 * 1e-6
    histogram = Histogram.of([1.0, 1e9])
    assert histogram.percentile(100) == pytest.approx(middle, rel=1e-12)
    assert histogram.percentile(50) == pytest.approx(1.0, rel=RESOLUTION)


def test_the_first_bucket_runs_from_zero_to_one_microsecond() -> None:
    assert BUCKET_LOWER[0] == 0.0 and BUCKET_UPPER[0] == 1e-6
    # Its middle, half a microsecond, stands for the values in it (within min and max).
    histogram = Histogram.of([0.0, 0.0, 0.0, 0.9e-6])
    assert histogram.percentile(50) == pytest.approx(0.5e-6, rel=1e-12)


def test_the_bucket_table_as_built() -> None:
    # Built once at import; built again here so that a change to how it is built shows.
    lower, upper = _bucket_bounds()
    assert np.array_equal(lower, BUCKET_LOWER) and np.array_equal(upper, BUCKET_UPPER)
    assert lower.shape == upper.shape == (BUCKETS,)
    assert lower[0] == 0.0 and upper[0] == 1e-6
    # Bucket 1 + 128 k + j covers [2^k (1 + j/128), 2^k (1 + (j+1)/128)) microseconds.
    for k, j in [(0, 0), (0, 127), (1, 0), (10, 64), (41, 127)]:
        index = 1 + 128 * k + j
        assert lower[index] == pytest.approx(2.0**k * (1 + j / 128) * 1e-6, rel=1e-15)
        assert upper[index] == pytest.approx(2.0**k * (1 + (j + 1) / 128) * 1e-6, rel=1e-15)
    assert np.all(lower[1:] == upper[:-1])
