"""Housekeeping the gateway runs at start-up and every few minutes (and ``imagegate db sweep``).

A process that dies between reserving a budget and settling it leaves money held; an entry in
the idempotency table outlives its TTL until something deletes it. ``sweep`` releases holds
older than the longest a request can take (so a live request is never released under its feet)
and purges expired idempotency entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from imagegate.ports import BudgetLedger, IdempotencyStore

__all__ = ["DEFAULT_HOLD_MAX_AGE_S", "SweepReport", "sweep"]

# Past any request's deadline (``x-imagegate-deadline-s`` allows 3600 s) plus a margin: releasing a
# live request's hold would lose its cost, since a settle after a release counts nothing.
DEFAULT_HOLD_MAX_AGE_S = 3900.0


@dataclass(frozen=True, slots=True)
class SweepReport:
    released_holds: int
    purged_idempotency_keys: int


async def sweep(
    budgets: BudgetLedger,
    idempotency: IdempotencyStore,
    now: datetime,
    *,
    hold_max_age_s: float = DEFAULT_HOLD_MAX_AGE_S,
) -> SweepReport:
    released = await budgets.release_stale(created_before=now - timedelta(seconds=hold_max_age_s), now=now)
    purged = await idempotency.purge_expired(now)
    return SweepReport(released_holds=released, purged_idempotency_keys=purged)
