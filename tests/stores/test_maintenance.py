"""sweep: crashed requests' budget holds are released, expired idempotency keys purged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from imagegate.policy.budget import BudgetSpec, Period
from imagegate.stores.maintenance import sweep

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


async def test_sweep_releases_only_old_holds_and_purges(stores: Any) -> None:
    spec = BudgetSpec("key:s", Decimal(1), Period.MONTH)
    await stores.budgets.reserve([spec], Decimal("0.4"), T0)  # its process died
    live = await stores.budgets.reserve([spec], Decimal("0.3"), T0 + timedelta(minutes=50))
    await stores.idempotency.claim("key_s", "old", "fp", T0, lease_s=60)
    report = await sweep(
        stores.budgets, stores.idempotency, T0 + timedelta(hours=1, minutes=1), hold_max_age_s=3600
    )
    assert (report.released_holds, report.purged_idempotency_keys) == (1, 1)
    usage = await stores.budgets.usage(spec, T0)
    assert usage.reserved_usd == Decimal("0.3") and usage.spent_usd == 0
    await stores.budgets.settle(live.id, Decimal("0.2"), T0 + timedelta(hours=2))
    assert (await stores.budgets.usage(spec, T0)).spent_usd == Decimal("0.2")
