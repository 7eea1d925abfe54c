"""policy/budget.py and policy/projection.py: windows, money, the reservation predicate, projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.errors import BudgetExceeded, InvalidRequest
from imagegate.policy.budget import (
    BudgetSpec,
    BudgetWindow,
    Period,
    check_reservation,
    nanos_to_usd,
    parse_usd,
    usd_to_nanos,
    window_end,
    window_start,
)
from imagegate.policy.projection import DiscountTier, apply_tiers, parse_tier, project_month


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (Period.DAY, utc(2026, 11, 24, 13, 5), utc(2026, 11, 24), utc(2026, 11, 25)),
        (Period.WEEK, utc(2026, 11, 24, 13, 5), utc(2026, 11, 23), utc(2026, 11, 30)),  # Tue → Mon
        (Period.WEEK, utc(2026, 11, 23, 0, 0), utc(2026, 11, 23), utc(2026, 11, 30)),
        (Period.MONTH, utc(2026, 11, 30, 23, 59), utc(2026, 11, 1), utc(2026, 12, 1)),
        (Period.MONTH, utc(2026, 12, 31, 23, 59), utc(2026, 12, 1), utc(2027, 1, 1)),
        (Period.MONTH, utc(2028, 2, 29, 12), utc(2028, 2, 1), utc(2028, 3, 1)),
        (Period.TOTAL, utc(2026, 11, 24), utc(1970, 1, 1), None),
    ],
)
def test_windows(period: Period, now: datetime, start: datetime, end: datetime | None) -> None:
    assert window_start(period, now) == start
    assert window_end(period, now) == end


def test_windows_are_utc_even_for_other_offsets() -> None:
    tokyo = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 2026-11-30 23:00 UTC
    assert window_start(Period.MONTH, tokyo) == utc(2026, 11, 1)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        window_start(Period.DAY, datetime(2026, 1, 1))


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(list(Period)),
)
def test_now_is_inside_its_window(naive: datetime, period: Period) -> None:
    now = naive.replace(tzinfo=UTC)
    start = window_start(period, now)
    end = window_end(period, now)
    assert start <= now
    if end is not None:
        assert now < end
        assert window_start(period, end) == end  # the next window starts exactly where this one ends


def test_money_round_trips_and_rounds() -> None:
    assert usd_to_nanos(Decimal("0.01109")) == 11_090_000
    assert nanos_to_usd(11_090_000) == Decimal("0.01109")
    assert usd_to_nanos(Decimal("0.0000000011"), round_up=True) == 2
    assert usd_to_nanos(Decimal("0.0000000015")) == 2  # half-even
    assert usd_to_nanos(Decimal("0.0000000025")) == 2
    assert nanos_to_usd(0) == 0
    assert str(nanos_to_usd(100 * 10**9)) == "100" and str(nanos_to_usd(1_500_000_000)) == "1.5"
    with pytest.raises(TypeError, match="Decimal"):
        usd_to_nanos(0.1)  # type: ignore[arg-type]


@given(st.decimals(min_value=0, max_value=10**6, places=9))
def test_nanos_are_exact_at_nine_places(amount: Decimal) -> None:
    assert nanos_to_usd(usd_to_nanos(amount)) == amount


def test_parse_usd_names_the_field() -> None:
    assert parse_usd("budget_usd", "$12.50") == Decimal("12.50")
    with pytest.raises(InvalidRequest) as info:
        parse_usd("budget_usd", "lots")
    assert info.value.field == "budget_usd" and "'lots'" in info.value.message
    with pytest.raises(InvalidRequest):
        parse_usd("budget_usd", "-3")


@pytest.mark.parametrize(
    ("spent", "reserved", "amount", "ok"),
    [(0, 0, 100, True), (50, 50, 0, True), (50, 49, 1, True), (50, 50, 1, False), (101, 0, 0, False)],
)
def test_check_reservation_predicate(spent: int, reserved: int, amount: int, ok: bool) -> None:
    spec = BudgetSpec("b", nanos_to_usd(100), Period.DAY)
    window = BudgetWindow(spent, reserved)
    if ok:
        check_reservation(spec, window, amount, utc(2026, 1, 1))
    else:
        with pytest.raises(BudgetExceeded):
            check_reservation(spec, window, amount, utc(2026, 1, 1))


def test_exceeded_message() -> None:
    spec = BudgetSpec("key:abc", Decimal("10"), Period.WEEK)
    with pytest.raises(BudgetExceeded) as info:
        check_reservation(
            spec,
            BudgetWindow(usd_to_nanos(Decimal("9.5")), usd_to_nanos(Decimal("0.3"))),
            usd_to_nanos(Decimal("0.25")),
            utc(2026, 11, 29, 12),
        )
    e = info.value
    assert e.remaining_usd == "0.2000" and e.limit_usd == "10.0000" and e.budget == "key:abc"
    assert "$10.0000 per week" in e.message and "held by requests in flight" in e.message
    assert e.retry_after_s == 12 * 3600
    assert e.details() == {"budget": "key:abc", "limit_usd": "10.0000", "remaining_usd": "0.2000"}


def test_tiers_are_marginal() -> None:
    tiers = [DiscountTier(Decimal(1000), Decimal(5)), DiscountTier(Decimal(10000), Decimal(10))]
    assert apply_tiers(Decimal(500), tiers) == Decimal(500)
    assert apply_tiers(Decimal(2000), tiers) == Decimal(1000) + Decimal(950)
    assert apply_tiers(Decimal(12000), tiers) == Decimal(1000) + Decimal(9000) * Decimal("0.95") + Decimal(
        1800
    )
    assert apply_tiers(Decimal(123), []) == Decimal(123)


@given(
    st.decimals(min_value=0, max_value=10**6, places=2), st.decimals(min_value=0, max_value=10**6, places=2)
)
def test_more_spend_never_costs_less(a: Decimal, b: Decimal) -> None:
    tiers = [DiscountTier(Decimal(1000), Decimal(5)), DiscountTier(Decimal(10000), Decimal(30))]
    lo, hi = sorted([a, b])
    assert apply_tiers(lo, tiers) <= apply_tiers(hi, tiers) <= hi


def test_parse_tier() -> None:
    assert parse_tier("1000=5%") == DiscountTier(Decimal(1000), Decimal(5))
    with pytest.raises(ValueError, match="THRESHOLD_USD=PERCENT"):
        parse_tier("1000")
    with pytest.raises(ValueError, match="between 0 and 100"):
        parse_tier("10=120")


def test_projection_is_linear_from_month_to_date() -> None:
    # 10 of November's 30 days elapsed, $100 spent → $300 projected; above $200, 10 % off.
    p = project_month(Decimal(100), utc(2026, 11, 11), [DiscountTier(Decimal(200), Decimal(10))])
    assert p.elapsed_fraction == Decimal("0.3333")
    assert p.projected_list_usd == Decimal("300.00")
    assert p.projected_discounted_usd == Decimal("290.00")
    assert p.tier_threshold_usd == Decimal(200)
    assert p.month_end == utc(2026, 12, 1)


def test_projection_at_the_very_start_of_a_month_does_not_explode() -> None:
    p = project_month(Decimal("0.5"), utc(2026, 11, 1, 0, 0, 1))
    assert p.projected_list_usd == Decimal("0.50")
