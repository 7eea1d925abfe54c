"""AuditLog contract and prompt retention; JSON-lines export."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from imagegate.ports import AuditEvent
from imagegate.stores import sql_audit
from imagegate.stores.audit import PromptRetention, event_to_json_line, with_prompt

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_record_and_export_in_order(stores: Any) -> None:
    for i in range(3):
        await stores.audit.record(
            AuditEvent(
                at=T0 + timedelta(minutes=i),
                actor_kind="admin",
                actor_name="cli",
                action="key.create",
                target=f"key_{i}",
                outcome="ok",
                details={"name": f"team-{i}", "rpm": 30},
            )
        )
    await stores.audit.record(
        AuditEvent(
            at=T0 + timedelta(hours=1),
            actor_kind="key",
            actor_id="key_0",
            action="request",
            outcome="ok",
            request_id="req_1",
            cost_usd=Decimal("0.01109"),
            prompt_sha256="ab" * 32,
        )
    )
    events = [e async for e in stores.audit.export()]
    assert [e.target for e in events[:3]] == ["key_0", "key_1", "key_2"]
    assert all(e.id.startswith("evt_") for e in events)
    assert events[0].details == {"name": "team-0", "rpm": 30}
    assert events[3].cost_usd == Decimal("0.01109") and events[3].at == T0 + timedelta(hours=1)
    since = [e async for e in stores.audit.export(since=T0 + timedelta(minutes=2))]
    assert [e.action for e in since] == ["key.create", "request"]


async def test_export_pages_through_many_events(stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_audit, "EXPORT_PAGE", 7)
    for i in range(23):
        await stores.audit.record(AuditEvent(at=T0, actor_kind="system", action="tick", outcome=str(i)))
    outcomes = [e.outcome async for e in stores.audit.export()]
    assert outcomes == [str(i) for i in range(23)]


def test_prompt_retention() -> None:
    base = AuditEvent(at=T0, actor_kind="key", action="request", outcome="ok")
    digest = hashlib.sha256(b"a red fox").hexdigest()
    assert with_prompt(base, "a red fox", PromptRetention.NONE).prompt_sha256 is None
    hashed = with_prompt(base, "a red fox", PromptRetention.HASH)
    assert hashed.prompt is None and hashed.prompt_sha256 == digest
    full = with_prompt(base, "a red fox", PromptRetention.FULL)
    assert full.prompt == "a red fox" and full.prompt_sha256 == digest


def test_json_line() -> None:
    line = event_to_json_line(
        AuditEvent(
            at=T0, actor_kind="key", action="request", outcome="ok", cost_usd=Decimal("0.5"), id="evt_1"
        )
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = orjson.loads(line)
    assert data["cost_usd"] == "0.5" and data["at"] == "2026-11-24T12:00:00+00:00" and data["id"] == "evt_1"


async def test_record_many_keeps_order_and_assigns_ids(stores: Any) -> None:
    await stores.audit.record(AuditEvent(at=T0, actor_kind="system", action="tick", outcome="first"))
    batch = [
        AuditEvent(
            at=T0 + timedelta(seconds=i),
            actor_kind="key",
            actor_id="key_a",
            action="image.generate",
            outcome=f"b{i}",
            request_id=f"req_{i}",
            cost_usd=Decimal("0.0123456789"),
            details={"n": 1, "http_status": 200},
        )
        for i in range(5)
    ]
    await stores.audit.record_many([*batch, replace(batch[0], outcome="given-id", id="evt_given")])
    await stores.audit.record_many([])
    events = [e async for e in stores.audit.export()]
    assert [e.outcome for e in events] == ["first", "b0", "b1", "b2", "b3", "b4", "given-id"]
    assert len({e.id for e in events}) == 7 and events[-1].id == "evt_given"
    assert events[1].cost_usd == Decimal("0.012345679") and events[1].details == {"n": 1, "http_status": 200}


async def test_client_supplied_text_longer_than_its_column_is_cut_not_refused(stores: Any) -> None:
    """The audit event of a request names the client's model (``target``) and request id: a
    long one is cut to its column, not refused (PostgreSQL checks lengths, SQLite does not)."""
    event = AuditEvent(
        at=T0, actor_kind="key", action="image.generate", outcome="invalid_request",
        target="m" * 300, request_id="r" * 200, actor_name="n" * 300,
    )  # fmt: skip
    await stores.audit.record_many([event, replace(event, target="ok", request_id="req_2")])
    first, second = [e async for e in stores.audit.export()]
    for name in ("target", "request_id", "actor_name"):
        stored, sent = getattr(first, name), getattr(event, name)
        assert stored and sent.startswith(stored), name
    assert second.target == "ok"
