"""Budget arithmetic and budget windows, as pure functions.

A budget is a USD limit over a period (``day``, ``week``, ``month`` or ``total``). Spending is
tracked per *window*: the window a moment belongs to is computed here, from ``now`` and the
period alone, so every store (memory, SQLite, PostgreSQL) agrees on roll-over without reading a
clock. Windows are in UTC; weeks start on Monday (ISO 8601).

Money is :class:`~decimal.Decimal` USD at the edges and an integer count of **nano-dollars**
(1e-9 USD) inside stores. Integers make the atomic SQL check
``spent + reserved + amount <= limit`` exact on every database (SQLite has no decimal type and
would otherwise compare floats). A nano-dollar is fine enough for per-token prices quoted in
dollars per million tokens with cents (1e-8 USD per token). Reservations round *up* to the next
nano-dollar so an estimate never under-reserves; recorded costs round half-even.

The decision itself (:func:`check_reservation`) is the one the in-memory store applies and the
one the SQL stores encode in their conditional ``UPDATE``; :func:`exceeded_error` builds the
error either way, so the message names the budget, the limit and what remains.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

from imagegate.errors import BudgetExceeded, InvalidRequest

__all__ = [
    "NANOS_PER_USD",
    "BudgetSpec",
    "BudgetWindow",
    "Period",
    "check_reservation",
    "exceeded_error",
    "nanos_to_usd",
    "parse_usd",
    "usd_to_nanos",
    "window_end",
    "window_start",
]

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal("1e-9")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("budget windows need an aware datetime (UTC); got a naive one")
    return now.astimezone(UTC)


def window_start(period: Period, now: datetime) -> datetime:
    """Start (inclusive, UTC) of the budget window that contains ``now``."""
    t = _utc(now)
    if period is Period.DAY:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.WEEK:
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return _EPOCH


def window_end(period: Period, now: datetime) -> datetime | None:
    """End (exclusive, UTC) of the window that contains ``now``; ``None`` for ``total``."""
    start = window_start(period, now)
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    if period is Period.MONTH:
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return None


def usd_to_nanos(amount: Decimal, *, round_up: bool = False) -> int:
    """Decimal USD → integer nano-dollars (ceiling when ``round_up``, else half-even)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, got {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"money must be finite, got {amount}")
    rounding = ROUND_CEILING if round_up else ROUND_HALF_EVEN
    return int((amount / _NANO).quantize(Decimal(1), rounding=rounding))


def nanos_to_usd(nanos: int) -> Decimal:
    """Integer nano-dollars → Decimal USD without trailing zeros (and never in E-notation)."""
    usd = (Decimal(nanos) * _NANO).normalize()
    exponent = usd.as_tuple().exponent
    return usd.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else usd


def parse_usd(field: str, value: str) -> Decimal:
    """Parse a user-given USD amount (CLI, admin API) or raise InvalidRequest naming the field."""
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise InvalidRequest.for_field(
            field, value, "a non-negative USD amount such as 100 or 12.50"
        ) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest.for_field(field, value, "a non-negative USD amount such as 100 or 12.50")
    return amount


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A named USD limit over a period. ``name`` is stable, e.g. ``key:<key id>`` or ``global``."""

    name: str
    limit_usd: Decimal
    period: Period

    def __post_init__(self) -> None:
        if not isinstance(self.limit_usd, Decimal) or self.limit_usd < 0:
            raise ValueError(f"budget {self.name}: limit_usd must be a non-negative Decimal")

    @property
    def limit_nanos(self) -> int:
        return usd_to_nanos(self.limit_usd)


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    """What has been spent and what is held by in-flight reservations in one window, in nanos."""

    spent_nanos: int = 0
    reserved_nanos: int = 0


def _fmt(usd: Decimal) -> str:
    return f"{usd.quantize(Decimal('0.0001')):f}"


def exceeded_error(
    spec: BudgetSpec, window: BudgetWindow, amount_nanos: int, now: datetime
) -> BudgetExceeded:
    """The error for a reservation of ``amount_nanos`` that ``window`` cannot hold."""
    remaining = max(0, spec.limit_nanos - window.spent_nanos - window.reserved_nanos)
    end = window_end(spec.period, now)
    retry = (end - _utc(now)).total_seconds() if end is not None else None
    period = "in total" if spec.period is Period.TOTAL else f"per {spec.period.value}"
    held = (
        f", ${_fmt(nanos_to_usd(window.reserved_nanos))} held by requests in flight"
        if window.reserved_nanos
        else ""
    )
    resets = f"; it resets at {end.isoformat()}" if end is not None else ""
    return BudgetExceeded(
        f"budget {spec.name!r} (${_fmt(spec.limit_usd)} {period}) cannot cover this request: "
        f"estimated ${_fmt(nanos_to_usd(amount_nanos))}, remaining ${_fmt(nanos_to_usd(remaining))} "
        f"(spent ${_fmt(nanos_to_usd(window.spent_nanos))}{held}){resets}",
        budget=spec.name,
        limit_usd=_fmt(spec.limit_usd),
        remaining_usd=_fmt(nanos_to_usd(remaining)),
        retry_after_s=retry,
    )


def check_reservation(spec: BudgetSpec, window: BudgetWindow, amount_nanos: int, now: datetime) -> None:
    """Allow a reservation iff ``spent + reserved + amount <= limit``; else raise BudgetExceeded.

    This is exactly the predicate of the SQL stores' conditional ``UPDATE``.
    """
    if amount_nanos < 0:
        raise ValueError("a reservation amount cannot be negative")
    if window.spent_nanos + window.reserved_nanos + amount_nanos > spec.limit_nanos:
        raise exceeded_error(spec, window, amount_nanos, now)
