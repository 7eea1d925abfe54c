"""The cost ledger in SQL: one row per client request and one per upstream attempt.

Summaries group in the database (``GROUP BY``) over integer nano-dollars, so totals are exact.
Their image counts are of images made: successful rows only (a request row's ``n`` is what was
asked for; an attempt row's is what that attempt made).
Request rows carry everything billed for a request; attempt rows carry what each attempt billed
and where it ran — so per-key/model/day totals read request rows and per-deployment totals read
attempt rows, and neither counts a cost twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.policy.budget import nanos_to_usd, usd_to_nanos
from imagegate.ports import CostGroup, CostRow, EntryKind, LedgerEntry
from imagegate.stores.engine import reader
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.schema import fit_to_columns, ledger_entries

__all__ = ["SqlLedger", "entry_kind_for", "group_label", "utc_day"]

_L = ledger_entries.c
_FIELDS = [f.name for f in dataclasses.fields(LedgerEntry)]
# One statement object for every write: with a list of parameter dicts SQLAlchemy compiles it
# once (and caches that) and hands the rows to the driver's executemany.
_INSERT = ledger_entries.insert()
_fit = fit_to_columns(ledger_entries)


def entry_kind_for(by: CostGroup) -> EntryKind:
    return EntryKind.ATTEMPT if by is CostGroup.DEPLOYMENT else EntryKind.REQUEST


def utc_day(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("ledger times must be aware UTC datetimes")
    return at.astimezone(UTC).date().isoformat()


def group_label(value: str | None) -> str:
    return value if value else "(none)"


def _row(entry: LedgerEntry) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(entry, name) for name in _FIELDS}
    values["kind"] = entry.kind.value
    values["cost_nanos"] = usd_to_nanos(values.pop("cost_usd"))
    values["day"] = utc_day(entry.started_at)
    return _fit(values)


@maps_storage_errors("the database")
class SqlLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def record(self, entry: LedgerEntry) -> None:
        await self.record_many((entry,))

    async def record_many(self, entries: Sequence[LedgerEntry]) -> None:
        """All rows in one transaction and one executemany (validated before anything is sent)."""
        if not entries:
            return
        rows = [_row(entry) for entry in entries]
        async with self._engine.begin() as conn:
            await conn.execute(_INSERT, rows)

    async def summarize(
        self, by: CostGroup, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[CostRow]:
        column = {
            CostGroup.KEY: _L.key_id,
            CostGroup.MODEL: _L.logical_model,
            CostGroup.DEPLOYMENT: _L.deployment,
            CostGroup.DAY: _L.day,
        }[by]
        query = (
            select(
                column,
                func.count(),
                func.coalesce(func.sum(case((_L.status == "ok", _L.n), else_=0)), 0),
                func.coalesce(func.sum(_L.cost_nanos), 0),
                func.coalesce(func.sum(case((_L.cost_exact.is_(False), 1), else_=0)), 0),
            )
            .where(_L.kind == entry_kind_for(by).value)
            .group_by(column)
            .order_by(column)
        )
        if since is not None:
            query = query.where(_L.started_at >= since)
        if until is not None:
            query = query.where(_L.started_at < until)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            CostRow(
                group=group_label(g),
                requests=int(count),
                images=int(images),
                cost_usd=nanos_to_usd(int(cost)),
                estimated=int(est),
            )
            for g, count, images, cost, est in rows
        ]

    async def total(self, *, since: datetime, until: datetime | None = None) -> Decimal:
        query = select(func.coalesce(func.sum(_L.cost_nanos), 0)).where(
            _L.kind == EntryKind.REQUEST.value, _L.started_at >= since
        )
        if until is not None:
            query = query.where(_L.started_at < until)
        async with self._reader.connect() as conn:
            return nanos_to_usd(int((await conn.execute(query)).scalar_one()))

    async def entries(
        self, *, request_id: str | None = None, since: datetime | None = None
    ) -> list[LedgerEntry]:
        query = select(ledger_entries).order_by(_L.started_at, _L.id)
        if request_id is not None:
            query = query.where(_L.request_id == request_id)
        if since is not None:
            query = query.where(_L.started_at >= since)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = []
        for row in rows:
            values = {name: row[name] for name in _FIELDS if name != "cost_usd"}
            values["kind"] = EntryKind(row["kind"])
            out.append(LedgerEntry(cost_usd=nanos_to_usd(row["cost_nanos"]), **values))
        return out
