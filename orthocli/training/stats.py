"""Paired comparison of two arms over seeds: means, standard deviations, the mean paired difference
with its 95% confidence interval (Student's t on the differences) and wins. Pure numbers in and out."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (no scipy at run time).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_critical(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df > 30: the normal's 1.96
    raised slightly, exact to 0.02)."""
    if df < 1:
        raise ValueError("a t-interval needs at least two pairs")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Arm:
    mean: float
    sd: float  # sample standard deviation (0 for one value)


@dataclass(frozen=True)
class Paired:
    """`method` against `control`, paired by seed; differences are method minus control."""

    n: int
    method: Arm
    control: Arm
    mean_difference: float
    ci_low: float | None  # 95% t-interval of the mean difference; None with one pair
    ci_high: float | None
    wins: int  # pairs where the method is strictly better

    def to_dict(self) -> dict:
        return asdict(self)


def arm(values: list[float]) -> Arm:
    return Arm(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def paired(method: list[float], control: list[float]) -> Paired:
    """Summary of paired values (same length, same order of seeds)."""
    if len(method) != len(control) or not method:
        raise ValueError("paired() needs two non-empty lists of the same length")
    diffs = [m - c for m, c in zip(method, control)]
    mean = statistics.fmean(diffs)
    low = high = None
    if len(diffs) > 1:
        half = t_critical(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    return Paired(len(diffs), arm(method), arm(control), mean, low, high, sum(d > 0 for d in diffs))
