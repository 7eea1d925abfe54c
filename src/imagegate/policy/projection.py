"""Projection of a month's spend, and what volume-discount tiers make of it. Pure.

The projection is linear from month-to-date: ``projected = mtd / elapsed_fraction_of_month``.
It is deliberately simple (and says so in its output) — a trend model would need history the
ledger may not have yet. Discount tiers are data: each tier gives a discount percentage applied
to the spend *above* its threshold (marginal, like tax brackets), so crossing a threshold never
makes the total cheaper than staying just below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from imagegate.policy.budget import Period, window_end, window_start

__all__ = ["DiscountTier", "MonthProjection", "apply_tiers", "parse_tier", "project_month"]

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class DiscountTier:
    """Spend above ``threshold_usd`` (per month) is discounted by ``discount_pct`` percent."""

    threshold_usd: Decimal
    discount_pct: Decimal

    def __post_init__(self) -> None:
        if not self.threshold_usd.is_finite() or self.threshold_usd < 0:
            raise ValueError(f"tier threshold must be a USD amount >= 0, got {self.threshold_usd}")
        if not Decimal(0) <= self.discount_pct <= Decimal(100):
            raise ValueError(f"tier discount must be between 0 and 100 percent, got {self.discount_pct}")


def parse_tier(text: str) -> DiscountTier:
    """``"1000=5"`` or ``"1000=5%"`` → spend above $1000 gets 5 % off."""
    threshold, sep, pct = text.partition("=")
    if not sep:
        raise ValueError(f"discount tier {text!r} must look like THRESHOLD_USD=PERCENT, e.g. 1000=5")
    try:
        return DiscountTier(Decimal(threshold.strip().lstrip("$")), Decimal(pct.strip().rstrip("%")))
    except ArithmeticError:
        raise ValueError(
            f"discount tier {text!r} must look like THRESHOLD_USD=PERCENT, e.g. 1000=5"
        ) from None


def apply_tiers(list_usd: Decimal, tiers: Sequence[DiscountTier]) -> Decimal:
    """Price after marginal volume discounts."""
    ordered = sorted(tiers, key=lambda t: t.threshold_usd)
    total = Decimal(0)
    for i, tier in enumerate(ordered):
        upper = ordered[i + 1].threshold_usd if i + 1 < len(ordered) else None
        if list_usd <= tier.threshold_usd:
            break
        top = list_usd if upper is None else min(list_usd, upper)
        total += (top - tier.threshold_usd) * (Decimal(100) - tier.discount_pct) / Decimal(100)
    base = min(list_usd, ordered[0].threshold_usd) if ordered else list_usd
    return total + base


@dataclass(frozen=True, slots=True)
class MonthProjection:
    month_start: datetime
    month_end: datetime
    elapsed_fraction: Decimal
    month_to_date_usd: Decimal
    projected_list_usd: Decimal
    projected_discounted_usd: Decimal
    tier_threshold_usd: Decimal | None  # the highest tier the projection reaches, if any
    method: str = "linear from month-to-date"


def project_month(
    month_to_date_usd: Decimal, now: datetime, tiers: Sequence[DiscountTier] = ()
) -> MonthProjection:
    start = window_start(Period.MONTH, now)
    end = window_end(Period.MONTH, now)
    assert end is not None
    elapsed = Decimal((now - start).total_seconds()) / Decimal((end - start).total_seconds())
    # Within the first minute there is nothing to extrapolate from; project what is known.
    projected = month_to_date_usd / elapsed if elapsed > Decimal("0.00002") else month_to_date_usd
    reached = [t.threshold_usd for t in tiers if projected > t.threshold_usd]
    return MonthProjection(
        month_start=start,
        month_end=end,
        elapsed_fraction=elapsed.quantize(Decimal("0.0001")),
        month_to_date_usd=month_to_date_usd,
        projected_list_usd=projected.quantize(_CENT),
        projected_discounted_usd=apply_tiers(projected, tiers).quantize(_CENT),
        tier_threshold_usd=max(reached) if reached else None,
    )
