"""Summary statistics for latency samples."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], percent: float) -> float:
    """Return the nearest-rank percentile: the smallest sample with ``percent`` % at or below it."""
    if not samples:
        raise ValueError("cannot take a percentile of no samples")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    ordered = sorted(samples)
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[rank - 1]


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Return p50, p95, p99, min, max and mean of ``samples`` in seconds, rounded to 0.1 ms."""
    return {
        "p50": round(percentile(samples, 50), 4),
        "p95": round(percentile(samples, 95), 4),
        "p99": round(percentile(samples, 99), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "mean": round(sum(samples) / len(samples), 4),
    }
