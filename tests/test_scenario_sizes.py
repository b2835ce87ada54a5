"""Counts and size distributions: bounds, reproducibility, display and validation."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpbench.scenario.sizes import (
    MIN_MESSAGE_SIZE,
    IntRange,
    SizeDistribution,
    format_size,
)
from smtpbench.units import parse_size

DISTRIBUTIONS = [
    SizeDistribution.fixed(2048),
    SizeDistribution.uniform(1024, 50 * 1024),
    SizeDistribution.lognormal(20 * 1024, 1.0, high=10 * 1024**2),
    SizeDistribution.choice((1024, 100 * 1024), (9, 1)),
]


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=str)
def test_samples_stay_within_bounds(dist: SizeDistribution) -> None:
    rng = random.Random(42)
    samples = [dist.sample(rng) for _ in range(5000)]
    assert all(dist.low <= s <= dist.high for s in samples)
    assert all(s >= MIN_MESSAGE_SIZE for s in samples)


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=str)
def test_samples_are_reproducible_with_a_seed(dist: SizeDistribution) -> None:
    first = [dist.sample(random.Random(7)) for _ in range(3)]
    again = [dist.sample(random.Random(7)) for _ in range(3)]
    assert first == again
    rng_a, rng_b = random.Random(11), random.Random(11)
    assert [dist.sample(rng_a) for _ in range(100)] == [dist.sample(rng_b) for _ in range(100)]


def test_lognormal_median_is_about_right() -> None:
    dist = SizeDistribution.lognormal(30 * 1024, 0.8)
    rng = random.Random(1)
    median = statistics.median(dist.sample(rng) for _ in range(20000))
    assert median == pytest.approx(30 * 1024, rel=0.05)


def test_lognormal_is_clamped() -> None:
    dist = SizeDistribution.lognormal(1024, 5.0, low=512, high=4096)
    rng = random.Random(2)
    samples = {dist.sample(rng) for _ in range(2000)}
    assert min(samples) == 512 and max(samples) == 4096


def test_choice_follows_weights() -> None:
    dist = SizeDistribution.choice((1024, 2048, 4096), (8, 2, 0))
    rng = random.Random(3)
    samples = [dist.sample(rng) for _ in range(10000)]
    assert 4096 not in samples
    assert samples.count(1024) / len(samples) == pytest.approx(0.8, abs=0.02)


def test_choice_without_weights_is_even() -> None:
    dist = SizeDistribution.choice((1024, 2048))
    assert dist.weights == (1.0, 1.0)
    assert dist.mean == 1536


def test_uniform_covers_its_range() -> None:
    dist = SizeDistribution.uniform(1000, 1003)
    rng = random.Random(4)
    assert {dist.sample(rng) for _ in range(200)} == {1000, 1001, 1002, 1003}


@pytest.mark.parametrize(
    ("dist", "text"),
    [
        (SizeDistribution.fixed(2048), "2KiB"),
        (SizeDistribution.uniform(1024, 51200), "uniform 1KiB..50KiB"),
        (
            SizeDistribution.lognormal(20480, 1.0, high=10 * 1024**2),
            "lognormal median 20KiB sigma 1 (512..10MiB)",
        ),
        (SizeDistribution.choice((1024, 102400), (9, 1)), "one of 1KiB x9, 100KiB x1"),
        (SizeDistribution.choice((1024, 102400)), "one of 1KiB, 100KiB"),
    ],
)
def test_display(dist: SizeDistribution, text: str) -> None:
    assert str(dist) == text


@pytest.mark.parametrize(
    "make",
    [
        lambda: SizeDistribution.fixed(10),
        lambda: SizeDistribution.uniform(4096, 1024),
        lambda: SizeDistribution.lognormal(1024, 0.0),
        lambda: SizeDistribution.lognormal(100 * 1024**2, 1.0),
        lambda: SizeDistribution.choice(()),
        lambda: SizeDistribution.choice((1024,), (1, 2)),
        lambda: SizeDistribution.choice((1024,), (0,)),
        lambda: SizeDistribution("fixed", 1024, 2048),
        lambda: SizeDistribution("normal", 1024, 2048),  # type: ignore[arg-type]
    ],
)
def test_invalid_distributions_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@given(st.integers(min_value=0, max_value=2**40))
def test_format_size_reads_back(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_prefers_binary_units() -> None:
    assert [format_size(n) for n in (2048, 10 * 1024**2, 5000, 1500)] == [
        "2KiB",
        "10MiB",
        "5kB",
        "1500",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, IntRange(3, 3)), ("3", IntRange(3, 3)), ("1..5", IntRange(1, 5)), (" 2 .. 4 ", None)],
)
def test_int_range_parse(value: int | str, expected: IntRange | None) -> None:
    if expected is None:
        assert IntRange.parse(value) == IntRange(2, 4)
    else:
        assert IntRange.parse(value) == expected


@pytest.mark.parametrize("value", ["x", "5..1", "-1", "1..", True, 1.5, "1...3"])
def test_int_range_parse_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        IntRange.parse(value)  # type: ignore[arg-type]


def test_int_range_pick_and_str() -> None:
    rng = random.Random(5)
    assert {IntRange(1, 3).pick(rng) for _ in range(100)} == {1, 2, 3}
    assert IntRange(4, 4).pick(rng) == 4
    assert (str(IntRange(3, 3)), str(IntRange(1, 5))) == ("3", "1..5")
