"""The one statistic of every hold-out experiment: the lift of a return rate, with its 95 %
confidence interval.

Campaigns, win-back and birthday offers each split their audience at random into an offered
group and a hold-out (control) group that gets nothing. The *lift* is the difference of the
two groups' return rates (a share of members who bought in the window): p1 − p2, where
p1 = returned offered / offered, p2 = returned control / control. Because the split is random
it estimates what the offer caused. Its 95 % confidence interval uses the normal
approximation of a difference of two independent proportions (Wald):

    (p1 − p2) ± 1.96 · sqrt(p1(1 − p1)/n1 + p2(1 − p2)/n2)

It is None when either group is empty. With small groups (a handful of members) the interval
is wide and approximate: read it as "not enough data yet" rather than as a precise bound.
Shares stay shares (0.1 = ten percentage points); renderers show percentage points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.96  # the two-sided 95 % quantile of the standard normal (1.95996…), as usually rounded


@dataclass(frozen=True)
class Lift:
    """p1 − p2 and its 95 % interval [low, high], as shares; None without both groups."""

    lift: float | None = None
    low: float | None = None
    high: float | None = None


def rate(part: float | int | None, whole: float | int | None) -> float | None:
    """part / whole; None when either is unknown or whole is 0 (every share of the KPIs)."""
    if part is None or not whole:
        return None
    return part / whole


def lift_ci(returned1: int, n1: int, returned2: int, n2: int, z: float = Z_95) -> Lift:
    """The lift of group 1 (offered) over group 2 (control) with its confidence interval."""
    if n1 <= 0 or n2 <= 0:
        return Lift()
    p1, p2 = returned1 / n1, returned2 / n2
    diff = p1 - p2
    margin = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return Lift(diff, diff - margin, diff + margin)
