"""Small-sample statistics for results over a handful of seeds.

Every reported metric is a mean over seeds with its standard deviation and a 95%
confidence interval for the mean from Student's t distribution:

.. math:: \\bar x \\pm t_{0.975,\\,n-1}\\, \\frac{s}{\\sqrt n}

Comparisons between two objectives use *paired* differences: both runs of a pair share
the seed (the same data order and evaluation prompts), so the per-seed difference
removes what the seeds have in common and its interval is usually much narrower than
the two separate intervals suggest.
"""

from __future__ import annotations

import math
import statistics

# Two-sided 95% quantiles t_{0.975, df} of Student's t distribution, df = 1..30 (standard tables).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """:math:`t_{0.975, df}`; beyond the table the normal quantile 1.96 is within 2%."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def describe(values: list[float]) -> dict:
    """``{mean, std, ci95: [low, high], per_seed}``.

    With a single value there is no spread to estimate: ``std`` and ``ci95`` are ``None`` (a
    table then shows the value alone, and no finding may call it significant). The same holds when
    a value is not finite (a measure undefined for some seed, such as the operand entropy of a model
    that never writes an answer of the form a+b).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("describe() needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2 or not all(math.isfinite(v) for v in values):  # NaN: undefined for some seed
        return {"mean": mean, "std": None, "ci95": None, "per_seed": values}
    std = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * std / math.sqrt(len(values))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "per_seed": values}


def paired_difference(a: list[float], b: list[float]) -> dict:
    """:func:`describe` of the per-seed differences ``a - b`` (same seeds, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} vs {len(b)}")
    out = describe([x - y for x, y in zip(a, b)])
    out["same_sign"] = max(sum(d > 0 for d in out["per_seed"]), sum(d < 0 for d in out["per_seed"]))
    return out


def excludes_zero(stat: dict) -> bool:
    """True when there is a 95% interval and it lies entirely on one side of zero (never for one seed)."""
    if stat.get("ci95") is None:
        return False
    low, high = stat["ci95"]
    return low > 0 or high < 0


def has_interval(stat: dict) -> bool:
    """Whether ``stat`` (from :func:`describe`) carries a 95% interval (at least two values)."""
    return stat.get("ci95") is not None


__all__ = ["describe", "excludes_zero", "has_interval", "paired_difference", "t_quantile"]
