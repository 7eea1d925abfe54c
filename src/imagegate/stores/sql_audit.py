"""The audit log in SQL: append-only rows, exported in insertion order as an async iterator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.policy.budget import nanos_to_usd, usd_to_nanos
from imagegate.ports import AuditEvent
from imagegate.stores.audit import new_event_id
from imagegate.stores.engine import reader
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.schema import audit_events, fit_to_columns

__all__ = ["SqlAuditLog"]

_A = audit_events.c
EXPORT_PAGE = 500
_INSERT = audit_events.insert()  # compiled once; many rows go through the driver's executemany
_fit = fit_to_columns(audit_events)


def _row(event: AuditEvent) -> dict[str, Any]:
    return _fit(
        {
            "id": event.id or new_event_id(),
            "at": event.at,
            "actor_kind": event.actor_kind,
            "actor_id": event.actor_id,
            "actor_name": event.actor_name,
            "action": event.action,
            "target": event.target,
            "outcome": event.outcome,
            "request_id": event.request_id,
            "cost_nanos": None if event.cost_usd is None else usd_to_nanos(event.cost_usd),
            "prompt": event.prompt,
            "prompt_sha256": event.prompt_sha256,
            "details": json.dumps(dict(event.details), sort_keys=True),
        }
    )


@maps_storage_errors("the database")
class SqlAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def record(self, event: AuditEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """All events in one transaction and one executemany, in order (``seq`` keeps it)."""
        if not events:
            return
        rows = [_row(event) for event in events]
        async with self._engine.begin() as conn:
            await conn.execute(_INSERT, rows)

    async def export(self, *, since: datetime | None = None) -> AsyncIterator[AuditEvent]:
        """Every event (from ``since``), oldest first, fetched a page at a time."""
        last = 0
        while True:
            query = select(audit_events).where(_A.seq > last).order_by(_A.seq).limit(EXPORT_PAGE)
            if since is not None:
                query = query.where(_A.at >= since)
            async with self._reader.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                yield AuditEvent(
                    id=row["id"],
                    at=row["at"],
                    actor_kind=row["actor_kind"],
                    actor_id=row["actor_id"],
                    actor_name=row["actor_name"],
                    action=row["action"],
                    target=row["target"],
                    outcome=row["outcome"],
                    request_id=row["request_id"],
                    cost_usd=None if row["cost_nanos"] is None else nanos_to_usd(row["cost_nanos"]),
                    prompt=row["prompt"],
                    prompt_sha256=row["prompt_sha256"],
                    details=json.loads(row["details"]),
                )
            if len(rows) < EXPORT_PAGE:
                return
            last = rows[-1]["seq"]
