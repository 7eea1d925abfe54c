"""KeyAdmin: admin changes land in the audit log with who made them, never with the key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from imagegate.errors import BudgetExceeded, InvalidRequest, NotFound
from imagegate.policy.budget import BudgetSpec, Period
from imagegate.ports import EntryKind, KeyRecord, KeyScope, LedgerEntry
from imagegate.stores.admin import KeyAdmin
from imagegate.stores.audit import event_to_json_line

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def admin(stores: Any) -> KeyAdmin:
    return KeyAdmin(stores.keys, stores.audit, stores.budgets, stores.ledger, clock=lambda: NOW)


async def test_changes_are_audited(stores: Any) -> None:
    a = admin(stores)
    new = await a.create("team-a", KeyScope(rpm=5), actor="alice")
    await a.set_scope("team-a", KeyScope(rpm=10), actor="alice")
    await a.set_scope(
        new.record.id, KeyScope(rpm=10, budget_usd=Decimal(50), budget_period=Period.WEEK), actor="bob"
    )
    await a.revoke("team-a", actor="carol")
    events = [e async for e in stores.audit.export()]
    assert [(e.action, e.actor_name) for e in events] == [
        ("key.create", "alice"),
        ("key.update", "alice"),
        ("budget.set", "bob"),
        ("key.revoke", "carol"),
    ]
    assert all(e.target == new.record.id and e.actor_kind == "admin" for e in events)
    assert events[2].details["budget_usd"] == "50" and events[2].details["budget_period"] == "week"
    dumped = b"".join(event_to_json_line(e) for e in events)
    assert new.plaintext[3:].encode() not in dumped


async def test_list_shows_budget_use(stores: Any) -> None:
    a = admin(stores)
    new = await a.create("team-a", KeyScope(budget_usd=Decimal(2)), actor="alice")
    await a.create("team-b", KeyScope(), actor="alice")
    spec = new.record.budget()
    assert spec is not None
    r = await stores.budgets.reserve([spec], Decimal("0.5"), NOW)
    await stores.budgets.settle(r.id, Decimal("0.4"), NOW)
    views = {v.record.name: v for v in await a.list()}
    assert views["team-a"].usage is not None and views["team-a"].usage.spent_usd == Decimal("0.4")
    assert views["team-a"].usage.remaining_usd == Decimal("1.6")
    assert views["team-b"].usage is None


async def test_resolve_by_name_must_be_unambiguous(stores: Any) -> None:
    a = admin(stores)
    await a.create("dup", KeyScope(), actor="x")
    await a.create("dup", KeyScope(), actor="x")
    with pytest.raises(InvalidRequest, match="several active keys"):
        await a.revoke("dup", actor="x")
    with pytest.raises(NotFound):
        await a.revoke("ghost", actor="x")


async def _spend(stores: Any, spec: BudgetSpec, key_id: str, cost: str, at: datetime) -> None:
    """One request as the gateway makes it: reserved and settled on the key's budget, then a
    request row (and an attempt row, which totals never count twice) in the ledger."""
    held = await stores.budgets.reserve([spec], Decimal(cost), at)
    await stores.budgets.settle(held.id, Decimal(cost), at)
    common = {"request_id": f"req_{at.isoformat()}", "started_at": at, "status": "ok", "key_id": key_id}
    await stores.ledger.record_many(
        [
            LedgerEntry(kind=EntryKind.REQUEST, cost_usd=Decimal(cost), **common),  # type: ignore[arg-type]
            LedgerEntry(kind=EntryKind.ATTEMPT, cost_usd=Decimal(cost), attempt=1, **common),  # type: ignore[arg-type]
        ]
    )


def _budget(record: KeyRecord) -> BudgetSpec:
    spec = record.budget()
    assert spec is not None
    return spec


async def test_a_period_change_counts_what_the_key_spent_in_the_new_period(stores: Any) -> None:
    """Daily → monthly on the 24th: the month's window counts the whole month's spend (the
    ledger's request rows of the key since the 1st). Before, day and month windows starting on
    the 1st were one row, and the month counted only the 1st's spend."""
    a = admin(stores)
    daily = KeyScope(budget_usd=Decimal(1), budget_period=Period.DAY)
    key = (await a.create("team-a", daily, actor="alice")).record
    other = (await a.create("team-b", daily, actor="alice")).record
    for day, cost in ((1, "0.20"), (10, "0.30"), (24, "0.15")):
        await _spend(stores, _budget(key), key.id, cost, datetime(2026, 11, day, 9, tzinfo=UTC))
    await _spend(stores, _budget(other), other.id, "0.50", datetime(2026, 11, 24, 9, tzinfo=UTC))
    await _spend(stores, _budget(key), key.id, "0.70", datetime(2026, 10, 31, 9, tzinfo=UTC))  # last month

    monthly = await a.set_scope(
        "team-a", KeyScope(budget_usd=Decimal(1), budget_period=Period.MONTH), actor="bob"
    )
    usage = await stores.budgets.usage(_budget(monthly), NOW)
    assert (usage.spent_usd, usage.remaining_usd) == (Decimal("0.65"), Decimal("0.35"))
    with pytest.raises(BudgetExceeded):
        await stores.budgets.reserve([_budget(monthly)], Decimal("0.40"), NOW)
    await _spend(stores, _budget(monthly), key.id, "0.10", NOW)  # spent today, while monthly

    back = await a.set_scope("team-a", daily, actor="bob")  # today's window: today's 0.15 + 0.10
    assert (await stores.budgets.usage(_budget(back), NOW)).spent_usd == Decimal("0.25")
    weekly = await a.set_scope(
        "team-a", KeyScope(budget_usd=Decimal(1), budget_period=Period.WEEK), actor="bob"
    )
    assert (await stores.budgets.usage(_budget(weekly), NOW)).spent_usd == Decimal("0.25")  # Mon 23rd on
    total = await a.set_scope(
        "team-a", KeyScope(budget_usd=Decimal(2), budget_period=Period.TOTAL), actor="bob"
    )
    assert (await stores.budgets.usage(_budget(total), NOW)).spent_usd == Decimal("1.45")


async def test_a_budget_set_on_a_key_counts_what_it_spent_this_period(stores: Any) -> None:
    a = admin(stores)
    key = (await a.create("team-a", KeyScope(), actor="alice")).record
    common = {"status": "ok", "key_id": key.id, "cost_usd": Decimal("0.40")}
    await stores.ledger.record(LedgerEntry(EntryKind.REQUEST, "req_1", NOW - timedelta(days=3), **common))  # type: ignore[arg-type]
    budgeted = await a.set_scope(
        key.id, KeyScope(budget_usd=Decimal(1), budget_period=Period.MONTH), actor="bob"
    )
    assert (await stores.budgets.usage(_budget(budgeted), NOW)).spent_usd == Decimal("0.40")
    raised = await a.set_scope(
        key.id, KeyScope(budget_usd=Decimal(3), budget_period=Period.MONTH), actor="bob"
    )
    assert (await stores.budgets.usage(_budget(raised), NOW)).spent_usd == Decimal("0.40")  # once


@dataclass
class _SpendingWhileChanged:
    """A key store whose ``update_scope`` first looks at the new period's window (no request may
    find it unseeded once the key has that period) and lets a request of the old period finish
    (it was admitted under it; its cost reaches the ledger while the key changes)."""

    stores: Any
    key_id: str
    new: BudgetSpec
    seen_before_the_change: Decimal | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stores.keys, name)

    async def update_scope(self, key_id: str, scope: KeyScope) -> KeyRecord:
        self.seen_before_the_change = (await self.stores.budgets.usage(self.new, NOW)).spent_usd
        old = _budget(await self.stores.keys.get(key_id))
        await _spend(self.stores, old, key_id, "0.05", NOW + timedelta(seconds=1))
        record: KeyRecord = await self.stores.keys.update_scope(key_id, scope)
        return record


async def test_the_new_window_is_seeded_before_the_key_changes_and_again_after(stores: Any) -> None:
    key = (
        await admin(stores).create("k", KeyScope(budget_usd=Decimal(1), budget_period=Period.DAY), actor="a")
    ).record
    await _spend(stores, _budget(key), key.id, "0.30", datetime(2026, 11, 2, tzinfo=UTC))
    monthly = KeyScope(budget_usd=Decimal(1), budget_period=Period.MONTH)
    spec = BudgetSpec(f"key:{key.id}", Decimal(1), Period.MONTH)
    watching = _SpendingWhileChanged(stores, key.id, spec)
    a = KeyAdmin(watching, stores.audit, stores.budgets, stores.ledger, clock=lambda: NOW)  # type: ignore[arg-type]
    await a.set_scope(key.id, monthly, actor="bob")
    assert watching.seen_before_the_change == Decimal("0.30")
    assert (await stores.budgets.usage(spec, NOW)).spent_usd == Decimal("0.35")
