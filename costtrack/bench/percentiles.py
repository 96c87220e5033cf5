"""Percentiles: nearest rank, as `costtrack stats` computes them (always an observed value)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank p-th percentile (the smallest value with at least p% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(p / 100.0 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def ms_percentiles(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in (50, 95, 99):
        value = percentile(ordered, p)
        out[f"p{p}"] = None if value is None else round(value * 1000.0, 3)
    return out
