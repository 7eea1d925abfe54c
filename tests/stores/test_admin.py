"""KeyAdmin: admin changes land in the audit log with who made them, never with the key."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from imagegate.errors import InvalidRequest, NotFound
from imagegate.policy.budget import Period
from imagegate.ports import KeyScope
from imagegate.stores.admin import KeyAdmin
from imagegate.stores.audit import event_to_json_line

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def admin(stores: Any) -> KeyAdmin:
    return KeyAdmin(stores.keys, stores.audit, stores.budgets, clock=lambda: NOW)


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
