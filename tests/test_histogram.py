"""Histogram percentiles against numpy on the raw samples, within the stated error."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from smtpbench.metrics.histogram import (
    BUCKET_LOWER,
    BUCKET_UPPER,
    RELATIVE_ERROR,
    UNIT,
    Histogram,
    HistogramSet,
    bucket_of,
)

QUANTILES = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)
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
    assert RELATIVE_ERROR <= 0.01
    np.testing.assert_allclose(ours, exact, rtol=RELATIVE_ERROR * 1.0001)
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
    assert widths.max() <= 2 * RELATIVE_ERROR + 1e-12
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
