"""Figures the benchmarks share: percentiles of their samples."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (``fraction`` in 0..1); NaN when there are none.

    The smallest sample with at least ``fraction`` of the samples at or below it
    (the p99 of 1,000 samples is the 990th smallest).
    """
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]
