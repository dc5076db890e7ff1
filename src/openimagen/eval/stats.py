"""Confidence intervals for the rates the evaluations report (ShapeBench, DrawBench votes)."""

from __future__ import annotations

import math

_Z95 = 1.959963984540054  # standard normal quantile at 0.975


def wilson_interval(successes: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927); (0, 1) when ``total``
    is 0. Unlike the normal approximation it stays inside [0, 1] and is honest at 0 and n."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


__all__ = ["wilson_interval"]
