"""The benchmarks' shared percentile (nearest rank)."""

from __future__ import annotations

import math

import pytest
from bench.stats import percentile


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, 1), (0.001, 1), (0.5, 500), (0.99, 990), (0.9991, 1000), (1.0, 1000)],
)
def test_nearest_rank_of_a_thousand_samples(fraction: float, expected: int) -> None:
    samples = [float(value) for value in range(1000, 0, -1)]  # order does not matter
    assert percentile(samples, fraction) == expected


def test_one_sample_is_every_percentile_and_none_is_nan() -> None:
    assert percentile([7.5], 0.99) == 7.5
    assert percentile([7.5], 0.0) == 7.5
    assert math.isnan(percentile([], 0.5))
