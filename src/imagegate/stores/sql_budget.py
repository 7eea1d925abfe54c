"""Budget reservations in SQL, atomic under concurrency on SQLite and PostgreSQL.

A reservation is one conditional ``UPDATE`` per budget (preceded, in the first request of a
period, by an ``INSERT ... ON CONFLICT DO NOTHING`` of the window row)::

    UPDATE ig_budget_windows SET reserved_nanos = reserved_nanos + :x
     WHERE budget = :b AND period = :p AND window_start = :w
       AND spent_nanos + reserved_nanos + :x <= :limit

The database evaluates the predicate and the increment as one step on the locked row
(PostgreSQL re-checks the ``WHERE`` after waiting for a concurrent writer under READ COMMITTED;
SQLite runs each transaction under ``BEGIN IMMEDIATE``), so no interleaving of concurrent
requests can hold more than the limit. Several budgets (the key's, a global one) are reserved in
one transaction, in name order so two requests never lock the same rows in opposite orders; if
any of them is exhausted the whole transaction rolls back. Settling and releasing flip the
reservation rows from ``held`` exactly once (``UPDATE ... WHERE state = 'held' RETURNING``), so a
retried settle cannot count a cost twice. The window of a reservation is fixed when it is made:
a request that straddles midnight is charged to the window it was admitted in.

A window is a budget's spend over one *period*: its row is keyed by budget, period and start,
so the day, week and month windows of a key never share a row. ``seed`` raises what a window
counts as spent, in one ``INSERT ... ON CONFLICT DO UPDATE`` that leaves its holds alone (a key
whose budget period changed: what it spent since the new window began).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imagegate.ids import new_hex_id
from imagegate.policy.budget import (
    BudgetSpec,
    BudgetWindow,
    exceeded_error,
    nanos_to_usd,
    usd_to_nanos,
    window_end,
    window_start,
)
from imagegate.ports import BudgetUsage, Reservation
from imagegate.stores.engine import reader
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.schema import budget_reservations, budget_windows

__all__ = ["SqlBudgetLedger", "insert_ignoring_conflicts", "new_reservation_id"]

_W = budget_windows.c
_R = budget_reservations.c


def new_reservation_id() -> str:
    return "res_" + new_hex_id(96)


def insert_ignoring_conflicts(conn: AsyncConnection, table: Any, values: dict[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    factory = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return factory(table).values(**values).on_conflict_do_nothing()


@maps_storage_errors("the database")
class SqlBudgetLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def reserve(self, budgets: Sequence[BudgetSpec], amount_usd: Decimal, now: datetime) -> Reservation:
        if amount_usd < 0:
            raise ValueError("a reservation amount cannot be negative")
        amount = usd_to_nanos(amount_usd, round_up=True)
        rid = new_reservation_id()
        ordered = sorted({b.name: b for b in budgets}.values(), key=lambda b: b.name)
        if ordered:
            async with self._engine.begin() as conn:
                for spec in ordered:
                    await self._reserve_one(conn, rid, spec, amount, now)
        return Reservation(
            id=rid, budgets=tuple(b.name for b in ordered), amount_usd=amount_usd, created_at=now
        )

    async def _reserve_one(
        self, conn: AsyncConnection, rid: str, spec: BudgetSpec, amount: int, now: datetime
    ) -> None:
        start = window_start(spec.period, now)
        guarded = (
            update(budget_windows)
            .where(
                _W.budget == spec.name,
                _W.period == spec.period.value,
                _W.window_start == start,
                _W.spent_nanos + _W.reserved_nanos + amount <= spec.limit_nanos,
            )
            .values(reserved_nanos=_W.reserved_nanos + amount)
        )
        result = await conn.execute(guarded)
        if result.rowcount != 1:
            # The window may not exist yet (first request of a period): make sure it does — a
            # concurrent first request may be creating it too — then try once more.
            await conn.execute(
                insert_ignoring_conflicts(
                    conn,
                    budget_windows,
                    {
                        "budget": spec.name,
                        "period": spec.period.value,
                        "window_start": start,
                        "spent_nanos": 0,
                        "reserved_nanos": 0,
                    },
                )
            )
            result = await conn.execute(guarded)
        if result.rowcount != 1:
            window = await self._window(conn, spec, start)
            raise exceeded_error(spec, window, amount, now)
        await conn.execute(
            budget_reservations.insert().values(
                id=rid,
                budget=spec.name,
                period=spec.period.value,
                window_start=start,
                amount_nanos=amount,
                state="held",
                created_at=now,
            )
        )

    async def settle(self, reservation_id: str, actual_usd: Decimal, now: datetime) -> None:
        await self._close(reservation_id, "settled", usd_to_nanos(actual_usd), now)

    async def release(self, reservation_id: str, now: datetime) -> None:
        await self._close(reservation_id, "released", 0, now)

    async def _close(self, reservation_id: str, state: str, actual: int, now: datetime) -> None:
        if actual < 0:
            raise ValueError("an actual cost cannot be negative")
        async with self._engine.begin() as conn:
            closed = (
                await conn.execute(
                    update(budget_reservations)
                    .where(_R.id == reservation_id, _R.state == "held")
                    .values(state=state, actual_nanos=actual, closed_at=now)
                    .returning(_R.budget, _R.period, _R.window_start, _R.amount_nanos)
                )
            ).all()
            for budget, period, start, held in sorted(closed, key=lambda r: (r[0], r[1])):
                await conn.execute(
                    update(budget_windows)
                    .where(_W.budget == budget, _W.period == period, _W.window_start == start)
                    .values(reserved_nanos=_W.reserved_nanos - held, spent_nanos=_W.spent_nanos + actual)
                )

    async def release_stale(self, *, created_before: datetime, now: datetime) -> int:
        """Release holds older than ``created_before`` (their process died before settling)."""
        async with self._reader.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        select(_R.id).where(_R.state == "held", _R.created_at < created_before).distinct()
                    )
                )
                .scalars()
                .all()
            )
        for rid in ids:
            await self.release(rid, now)
        return len(ids)

    async def seed(self, spec: BudgetSpec, spent_usd: Decimal, now: datetime) -> None:
        if spent_usd < 0:
            raise ValueError("a spent amount cannot be negative")
        seeded = usd_to_nanos(spent_usd)
        async with self._engine.begin() as conn:
            factory = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            insert = factory(budget_windows).values(
                budget=spec.name,
                period=spec.period.value,
                window_start=window_start(spec.period, now),
                spent_nanos=seeded,
                reserved_nanos=0,
            )
            higher = case((_W.spent_nanos < seeded, seeded), else_=_W.spent_nanos)
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[_W.budget, _W.period, _W.window_start], set_={"spent_nanos": higher}
                )
            )

    async def usage(self, spec: BudgetSpec, now: datetime) -> BudgetUsage:
        start = window_start(spec.period, now)
        async with self._reader.connect() as conn:
            window = await self._window(conn, spec, start)
        return BudgetUsage(
            spec=spec,
            window_start=start,
            window_end=window_end(spec.period, now),
            spent_usd=nanos_to_usd(window.spent_nanos),
            reserved_usd=nanos_to_usd(window.reserved_nanos),
        )

    @staticmethod
    async def _window(conn: AsyncConnection, spec: BudgetSpec, start: datetime) -> BudgetWindow:
        row = (
            await conn.execute(
                select(_W.spent_nanos, _W.reserved_nanos).where(
                    _W.budget == spec.name, _W.period == spec.period.value, _W.window_start == start
                )
            )
        ).first()
        return BudgetWindow() if row is None else BudgetWindow(spent_nanos=row[0], reserved_nanos=row[1])
