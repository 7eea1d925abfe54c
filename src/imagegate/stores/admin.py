"""Key administration with its audit trail: what the CLI and the admin HTTP API both call.

Every change (create, revoke, scope or budget change) is written to the audit log with who made
it; the key's plaintext never is.

A budget that takes a new period (``day`` → ``month``), or that a key had not, counts what the key
spent in the window it starts with: the cost of the key's requests since that window began, from
the ledger. The window is seeded with it before the key changes, so no request finds it counting
less, and again once it has (a request of the old period may have finished in between); a
request still running then is charged to the window it was admitted in, as one that straddles
midnight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from imagegate.errors import InvalidRequest, NotFound
from imagegate.policy.budget import BudgetSpec, window_start
from imagegate.ports import (
    AuditEvent,
    AuditLog,
    BudgetLedger,
    BudgetUsage,
    CostGroup,
    KeyRecord,
    KeyScope,
    KeyStore,
    Ledger,
    NewKey,
)

__all__ = ["KeyAdmin", "KeyView", "scope_details"]


def scope_details(scope: KeyScope) -> dict[str, str | int | float | bool | None]:
    return {
        "models": ",".join(scope.models) or "*",
        "max_quality": scope.max_quality,
        "max_n": scope.max_n,
        "rpm": scope.rpm,
        "budget_usd": None if scope.budget_usd is None else str(scope.budget_usd),
        "budget_period": scope.budget_period.value,
    }


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as an admin sees it: the record plus its budget use this period (if any)."""

    record: KeyRecord
    usage: BudgetUsage | None


class KeyAdmin:
    def __init__(
        self,
        keys: KeyStore,
        audit: AuditLog,
        budgets: BudgetLedger,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._keys = keys
        self._audit = audit
        self._budgets = budgets
        self._ledger = ledger
        self._clock = clock

    async def create(
        self, name: str, scope: KeyScope, *, actor: str, expires_at: datetime | None = None
    ) -> NewKey:
        now = self._clock()
        new = await self._keys.create(name, scope, now, expires_at=expires_at)
        await self._record(now, actor, "key.create", new.record, scope_details(scope))
        return new

    async def resolve(self, id_or_name: str) -> KeyRecord:
        """A key by id, or by name when exactly one active key has it."""
        record = await self._keys.get(id_or_name)
        if record is not None:
            return record
        named = [k for k in await self._keys.list() if k.name == id_or_name]
        if not named:
            raise NotFound(f"no API key with id or active name {id_or_name!r}")
        if len(named) > 1:
            ids = ", ".join(k.id for k in named)
            raise InvalidRequest.for_field(
                "key", id_or_name, f"one key id; several active keys have this name: {ids}"
            )
        return named[0]

    async def revoke(self, id_or_name: str, *, actor: str) -> KeyRecord:
        now = self._clock()
        record = await self._keys.revoke((await self.resolve(id_or_name)).id, now)
        await self._record(now, actor, "key.revoke", record, {"name": record.name})
        return record

    async def set_scope(self, id_or_name: str, scope: KeyScope, *, actor: str) -> KeyRecord:
        now = self._clock()
        before = await self.resolve(id_or_name)
        new_window = replace(before, scope=scope).budget()  # a window the key's budget did not count in
        if before.scope.budget_usd is not None and before.scope.budget_period == scope.budget_period:
            new_window = None
        if new_window is not None:  # seeded before any request can use it
            await self._seed(new_window, before.id, now)
        record = await self._keys.update_scope(before.id, scope)
        if new_window is not None:  # and with what requests of the old period spent meanwhile
            await self._seed(new_window, before.id, now)
        budget_changed = (before.scope.budget_usd, before.scope.budget_period) != (
            scope.budget_usd,
            scope.budget_period,
        )
        action = "budget.set" if budget_changed else "key.update"
        await self._record(now, actor, action, record, scope_details(scope))
        return record

    async def _seed(self, budget: BudgetSpec, key_id: str, now: datetime) -> None:
        """``budget``'s window counts what the key spent since it began (its ledger request rows)."""
        rows = await self._ledger.summarize(CostGroup.KEY, since=window_start(budget.period, now))
        spent = next((row.cost_usd for row in rows if row.group == key_id), Decimal(0))
        await self._budgets.seed(budget, spent, now)

    async def list(self, *, include_revoked: bool = False) -> list[KeyView]:
        now = self._clock()
        views = []
        for record in await self._keys.list(include_revoked=include_revoked):
            spec = record.budget()
            views.append(KeyView(record, None if spec is None else await self._budgets.usage(spec, now)))
        return views

    async def _record(
        self,
        now: datetime,
        actor: str,
        action: str,
        record: KeyRecord,
        details: dict[str, str | int | float | bool | None],
    ) -> None:
        await self._audit.record(
            AuditEvent(
                at=now,
                actor_kind="admin",
                actor_name=actor,
                action=action,
                target=record.id,
                outcome="ok",
                details={"prefix": record.prefix, **details},
            )
        )
