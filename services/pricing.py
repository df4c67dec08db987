"""Pricing: what discount a purchase gets and why.

discount % = max(card's printed pct, tier reached by this purchase's amount, tier reached by the
card holder's cumulative spend before this purchase, when enabled) + an active personal offer
(one-time), capped at DISCOUNT_MAX_PCT. Amounts are integer minor units; the discount is rounded
half up to the minor unit, and the cashier always sees the breakdown before confirming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Tiers = Sequence[tuple[int, int]]  # (threshold in minor units, pct), ascending


def discount_for(amount: int, pct: int) -> int:
    """Discount in minor units for `pct` % of `amount`, rounded half up."""
    return (amount * pct + 50) // 100


def tier_for(value: int, tiers: Tiers) -> int:
    """The highest tier pct whose threshold `value` reaches (0 when none)."""
    reached = 0
    for threshold, pct in tiers:
        if value >= threshold:
            reached = max(reached, pct)
    return reached


@dataclass(frozen=True)
class Quote:
    amount: int
    base_pct: int
    amount_tier_pct: int
    cumulative_tier_pct: int
    offer_pct: int
    discount_pct: int
    discount_amount: int
    paid_amount: int
    capped: bool
    promo_pct: int = 0  # a happy hour's bonus (services.promotions)

    @property
    def tier_pct(self) -> int:
        return max(self.base_pct, self.amount_tier_pct, self.cumulative_tier_pct)


def quote(
    *,
    amount: int,
    base_pct: int,
    spend_before: int = 0,
    amount_tiers: Tiers = (),
    cumulative_tiers: Tiers = (),
    offer_pct: int = 0,
    promo_pct: int = 0,
    max_pct: int = 99,
) -> Quote:
    amount_tier = tier_for(amount, amount_tiers)
    cumulative_tier = tier_for(spend_before, cumulative_tiers)
    uncapped = max(base_pct, amount_tier, cumulative_tier) + offer_pct + promo_pct
    pct = min(uncapped, max_pct)
    discount = discount_for(amount, pct)
    return Quote(
        amount=amount,
        base_pct=base_pct,
        amount_tier_pct=amount_tier,
        cumulative_tier_pct=cumulative_tier,
        offer_pct=offer_pct,
        discount_pct=pct,
        discount_amount=discount,
        paid_amount=amount - discount,
        capped=uncapped > pct,
        promo_pct=promo_pct,
    )


@dataclass(frozen=True)
class NextTier:
    pct: int
    remaining: int  # minor units still to spend


def next_tier(current_pct: int, spend: int, cumulative_tiers: Tiers) -> NextTier | None:
    """The next cumulative tier above `current_pct` and how much more spend reaches it."""
    for threshold, pct in cumulative_tiers:
        if pct > current_pct and threshold > spend:
            return NextTier(pct=pct, remaining=threshold - spend)
    return None
