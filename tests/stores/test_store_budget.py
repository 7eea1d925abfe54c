"""BudgetLedger contract: atomic reservations, settle/release, roll-over — on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from imagegate.errors import BudgetExceeded
from imagegate.policy.budget import BudgetSpec, Period

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_fifty_concurrent_reservations_against_room_for_ten(stores: Any) -> None:
    spec = BudgetSpec("key:concurrency", Decimal("1.00"), Period.MONTH)
    amount = Decimal("0.10")

    async def one() -> bool:
        try:
            await stores.budgets.reserve([spec], amount, NOW)
        except BudgetExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert results.count(True) == 10
    usage = await stores.budgets.usage(spec, NOW)
    assert usage.reserved_usd == Decimal("1.00")
    assert usage.spent_usd == 0
    assert usage.remaining_usd == 0


async def test_settle_moves_hold_to_spent_and_is_idempotent(stores: Any) -> None:
    spec = BudgetSpec("key:a", Decimal("1"), Period.DAY)
    r = await stores.budgets.reserve([spec], Decimal("0.25"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.011090"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.011090"), NOW)  # retried settle: no double count
    await stores.budgets.release(r.id, NOW)  # release after settle: no effect
    usage = await stores.budgets.usage(spec, NOW)
    assert usage.spent_usd == Decimal("0.01109")
    assert usage.reserved_usd == 0


async def test_release_frees_the_hold(stores: Any) -> None:
    spec = BudgetSpec("key:b", Decimal("0.10"), Period.DAY)
    r = await stores.budgets.reserve([spec], Decimal("0.10"), NOW)
    with pytest.raises(BudgetExceeded):
        await stores.budgets.reserve([spec], Decimal("0.01"), NOW)
    await stores.budgets.release(r.id, NOW)
    await stores.budgets.reserve([spec], Decimal("0.10"), NOW)


async def test_exceeded_names_budget_and_remaining(stores: Any) -> None:
    spec = BudgetSpec("key:team-a", Decimal("0.10"), Period.MONTH)
    r = await stores.budgets.reserve([spec], Decimal("0.04"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.04"), NOW)
    with pytest.raises(BudgetExceeded) as info:
        await stores.budgets.reserve([spec], Decimal("0.07"), NOW)
    err = info.value
    assert err.budget == "key:team-a"
    assert err.remaining_usd == "0.0600"
    assert err.limit_usd == "0.1000"
    assert "key:team-a" in err.message and "remaining $0.0600" in err.message
    assert err.retry_after_s == (datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds()


async def test_all_or_nothing_across_budgets(stores: Any) -> None:
    roomy = BudgetSpec("global", Decimal("100"), Period.MONTH)
    tight = BudgetSpec("key:tight", Decimal("0.05"), Period.MONTH)
    with pytest.raises(BudgetExceeded) as info:
        await stores.budgets.reserve([roomy, tight], Decimal("0.06"), NOW)
    assert info.value.budget == "key:tight"
    assert (await stores.budgets.usage(roomy, NOW)).reserved_usd == 0  # rolled back
    r = await stores.budgets.reserve([roomy, tight], Decimal("0.05"), NOW)
    assert r.budgets == ("global", "key:tight")
    await stores.budgets.settle(r.id, Decimal("0.03"), NOW)
    assert (await stores.budgets.usage(roomy, NOW)).spent_usd == Decimal("0.03")
    assert (await stores.budgets.usage(tight, NOW)).spent_usd == Decimal("0.03")


async def test_period_roll_over_starts_a_fresh_window(stores: Any) -> None:
    spec = BudgetSpec("key:daily", Decimal("0.10"), Period.DAY)
    r = await stores.budgets.reserve([spec], Decimal("0.10"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.10"), NOW)
    with pytest.raises(BudgetExceeded):
        await stores.budgets.reserve([spec], Decimal("0.01"), NOW + timedelta(hours=11, minutes=59))
    tomorrow = NOW + timedelta(hours=12)
    await stores.budgets.reserve([spec], Decimal("0.10"), tomorrow)
    assert (await stores.budgets.usage(spec, tomorrow)).reserved_usd == Decimal("0.10")
    assert (await stores.budgets.usage(spec, NOW)).spent_usd == Decimal("0.10")


async def test_settle_after_roll_over_charges_the_admitting_window(stores: Any) -> None:
    spec = BudgetSpec("key:straddle", Decimal("1"), Period.DAY)
    late = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    r = await stores.budgets.reserve([spec], Decimal("0.20"), late)
    await stores.budgets.settle(r.id, Decimal("0.15"), late + timedelta(seconds=5))
    assert (await stores.budgets.usage(spec, late)).spent_usd == Decimal("0.15")
    assert (await stores.budgets.usage(spec, late)).reserved_usd == 0
    assert (await stores.budgets.usage(spec, late + timedelta(seconds=5))).spent_usd == 0


async def test_actual_cost_above_estimate_is_recorded_truthfully(stores: Any) -> None:
    spec = BudgetSpec("key:over", Decimal("0.10"), Period.TOTAL)
    r = await stores.budgets.reserve([spec], Decimal("0.08"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.12"), NOW)
    usage = await stores.budgets.usage(spec, NOW)
    assert usage.spent_usd == Decimal("0.12")
    assert usage.remaining_usd == 0
    with pytest.raises(BudgetExceeded) as info:
        await stores.budgets.reserve([spec], Decimal("0"), NOW)  # even a free request: 0.12 > 0.10
    assert info.value.retry_after_s is None  # a total budget never resets


async def test_reservation_rounds_up_to_the_nano_dollar(stores: Any) -> None:
    spec = BudgetSpec("key:nano", Decimal("0.000000002"), Period.TOTAL)
    await stores.budgets.reserve([spec], Decimal("0.0000000011"), NOW)  # holds 2 nanos, not 1
    with pytest.raises(BudgetExceeded):
        await stores.budgets.reserve([spec], Decimal("0.000000001"), NOW)


async def test_stale_holds_are_released(stores: Any) -> None:
    spec = BudgetSpec("key:stale", Decimal("1"), Period.MONTH)
    await stores.budgets.reserve([spec], Decimal("0.5"), NOW)
    fresh = await stores.budgets.reserve([spec], Decimal("0.25"), NOW + timedelta(minutes=20))
    released = await stores.budgets.release_stale(created_before=NOW + timedelta(minutes=10), now=NOW)
    assert released == 1
    assert (await stores.budgets.usage(spec, NOW)).reserved_usd == Decimal("0.25")
    await stores.budgets.settle(fresh.id, Decimal("0.25"), NOW)


async def test_no_budgets_reserves_nothing(stores: Any) -> None:
    r = await stores.budgets.reserve([], Decimal("5"), NOW)
    assert r.budgets == ()
    await stores.budgets.settle(r.id, Decimal("5"), NOW)


async def test_negative_amount_is_refused(stores: Any) -> None:
    spec = BudgetSpec("key:neg", Decimal("1"), Period.MONTH)
    with pytest.raises(ValueError, match="negative"):
        await stores.budgets.reserve([spec], Decimal("-0.01"), NOW)


async def test_windows_of_different_periods_never_share_a_row(stores: Any) -> None:
    """A key's day, week and month windows are separate even when they start together: before,
    they were one row whenever their start dates coincided (keyed by name and start only)."""
    first = datetime(2026, 6, 1, 12, tzinfo=UTC)  # a Monday and the 1st: all three start at 00:00
    day, week, month = (
        BudgetSpec("key:periods", Decimal("1"), p) for p in (Period.DAY, Period.WEEK, Period.MONTH)
    )
    r = await stores.budgets.reserve([day], Decimal("0.30"), first)
    await stores.budgets.settle(r.id, Decimal("0.30"), first)
    held = await stores.budgets.reserve([week], Decimal("0.20"), first)
    assert (await stores.budgets.usage(day, first)).spent_usd == Decimal("0.30")
    assert (await stores.budgets.usage(week, first)).spent_usd == 0
    assert (await stores.budgets.usage(week, first)).reserved_usd == Decimal("0.20")
    assert (await stores.budgets.usage(month, first)).spent_usd == 0
    assert (await stores.budgets.usage(month, first)).reserved_usd == 0
    await stores.budgets.settle(held.id, Decimal("0.10"), first)
    assert (await stores.budgets.usage(week, first)).spent_usd == Decimal("0.10")
    assert (await stores.budgets.usage(day, first)).spent_usd == Decimal("0.30")
    await stores.budgets.reserve([month], Decimal("1"), first)  # the month's window is untouched


async def test_seeding_a_window_raises_its_spend_and_keeps_its_holds(stores: Any) -> None:
    spec = BudgetSpec("key:seeded", Decimal("1"), Period.MONTH)
    held = await stores.budgets.reserve([spec], Decimal("0.25"), NOW)
    await stores.budgets.seed(spec, Decimal("0.60"), NOW)
    usage = await stores.budgets.usage(spec, NOW)
    assert (usage.spent_usd, usage.reserved_usd) == (Decimal("0.60"), Decimal("0.25"))
    await stores.budgets.seed(spec, Decimal("0.10"), NOW)  # never lowers what the window counts
    assert (await stores.budgets.usage(spec, NOW)).spent_usd == Decimal("0.60")
    with pytest.raises(BudgetExceeded):
        await stores.budgets.reserve([spec], Decimal("0.16"), NOW)
    await stores.budgets.settle(held.id, Decimal("0.20"), NOW)
    assert (await stores.budgets.usage(spec, NOW)).spent_usd == Decimal("0.80")
    fresh = BudgetSpec("key:fresh", Decimal("1"), Period.DAY)  # a window no request made yet
    await stores.budgets.seed(fresh, Decimal("0.5"), NOW)
    usage = await stores.budgets.usage(fresh, NOW)
    assert (usage.spent_usd, usage.reserved_usd) == (Decimal("0.5"), 0)
    assert (await stores.budgets.usage(fresh, NOW - timedelta(days=1))).spent_usd == 0


async def test_seeding_while_requests_reserve_loses_none_of_their_holds(stores: Any) -> None:
    spec = BudgetSpec("key:busy", Decimal("1"), Period.WEEK)

    async def one() -> bool:
        try:
            await stores.budgets.reserve([spec], Decimal("0.05"), NOW)
        except BudgetExceeded:
            return False
        return True

    results = await asyncio.gather(
        *(one() for _ in range(10)),
        stores.budgets.seed(spec, Decimal("0.5"), NOW),
        *(one() for _ in range(10)),
    )
    usage = await stores.budgets.usage(spec, NOW)
    assert usage.spent_usd == Decimal("0.5")  # the seed, whenever it ran
    assert usage.reserved_usd == Decimal("0.05") * results.count(True)  # every admitted hold kept
