"""The lift of a return rate with its 95 % confidence interval, on numbers worked by hand."""

from __future__ import annotations

import pytest

from services.experiments import Lift, lift_ci, rate


def test_lift_and_interval_on_hand_computed_numbers() -> None:
    # 30 of 100 offered came back, 10 of 100 in the hold-out: p1 = 0.3, p2 = 0.1.
    # SE = sqrt(0.3·0.7/100 + 0.1·0.9/100) = sqrt(0.0021 + 0.0009) = sqrt(0.003) = 0.054772
    # margin = 1.96 × 0.054772 = 0.107354 → 0.2 ± 0.107354 = [0.092646, 0.307354]
    found = lift_ci(30, 100, 10, 100)
    assert found.lift == pytest.approx(0.2)
    assert found.low == pytest.approx(0.092646, abs=1e-6)
    assert found.high == pytest.approx(0.307354, abs=1e-6)


def test_unequal_groups_and_a_negative_lift() -> None:
    # 2 of 8 vs 1 of 2: p1 = 0.25, p2 = 0.5, diff = −0.25;
    # SE = sqrt(0.25·0.75/8 + 0.5·0.5/2) = sqrt(0.0234375 + 0.125) = sqrt(0.1484375) = 0.385276
    # margin = 1.96 × 0.385276 = 0.755141 → [−1.005141, 0.505141]
    found = lift_ci(2, 8, 1, 2)
    assert found.lift == pytest.approx(-0.25)
    assert found.low == pytest.approx(-1.005141, abs=1e-6)
    assert found.high == pytest.approx(0.505141, abs=1e-6)


def test_no_interval_without_both_groups() -> None:
    assert lift_ci(3, 10, 0, 0) == Lift(None, None, None)
    assert lift_ci(0, 0, 3, 10) == Lift(None, None, None)
    # Nobody came back in either group: no difference and no spread.
    assert lift_ci(0, 50, 0, 5) == Lift(0.0, 0.0, 0.0)
    assert rate(1, 4) == 0.25 and rate(1, 0) is None
