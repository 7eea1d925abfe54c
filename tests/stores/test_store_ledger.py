"""Ledger contract: request and attempt rows, exact Decimal totals, grouping, time filters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from imagegate.ports import CostGroup, EntryKind, LedgerEntry
from imagegate.stores.sql import sql_stores_for

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def request(
    rid: str, key: str, model: str, cost: str, at: datetime, *, n: int = 1, exact: bool = True
) -> LedgerEntry:
    return LedgerEntry(
        kind=EntryKind.REQUEST,
        request_id=rid,
        started_at=at,
        status="ok",
        cost_usd=Decimal(cost),
        cost_exact=exact,
        key_id=key,
        logical_model=model,
        n=n,
        finished_at=at + timedelta(seconds=13),
        latency_ms=13_800.5,
        idempotency_key=f"idem-{rid}",
    )


def attempt(rid: str, no: int, deployment: str, cost: str, status: str = "ok") -> LedgerEntry:
    return LedgerEntry(
        kind=EntryKind.ATTEMPT,
        request_id=rid,
        attempt=no,
        started_at=T0,
        status=status,
        cost_usd=Decimal(cost),
        cost_exact=True,
        key_id="key_a",
        logical_model="gpt-image-1",
        model="gpt-image-1",
        deployment=deployment,
        region="swedencentral",
        size="1024x1024",
        quality="low",
        n=1,
        text_in_tokens=42,
        image_out_tokens=272,
        http_status=200 if status == "ok" else 429,
        error_code=None if status == "ok" else "429",
    )


async def seed(stores: Any) -> None:
    await stores.ledger.record(request("r1", "key_a", "gpt-image-1", "0.01109", T0))
    await stores.ledger.record(attempt("r1", 1, "swe-1", "0", status="rate_limited"))
    await stores.ledger.record(attempt("r1", 2, "eus-1", "0.01109"))
    await stores.ledger.record(
        request("r2", "key_a", "dall-e-3", "0.08", T0 + timedelta(hours=1), n=2, exact=False)
    )
    await stores.ledger.record(attempt("r2", 1, "eus-1", "0.08"))
    await stores.ledger.record(request("r3", "key_b", "gpt-image-1", "0.2", T0 + timedelta(days=1)))
    await stores.ledger.record(
        LedgerEntry(
            kind=EntryKind.REQUEST, request_id="r4", started_at=T0, status="rejected", http_status=403
        )
    )


async def test_round_trip_keeps_every_field(stores: Any) -> None:
    entry = attempt("rx", 3, "swe-1", "0.0123456789")
    await stores.ledger.record(entry)
    [back] = await stores.ledger.entries(request_id="rx")
    assert back.cost_usd == Decimal("0.012345679")  # stored to the nano-dollar
    assert (back.deployment, back.region, back.attempt, back.text_in_tokens, back.image_out_tokens) == (
        "swe-1",
        "swedencentral",
        3,
        42,
        272,
    )
    assert back.kind is EntryKind.ATTEMPT and back.started_at == T0 and back.cost_exact is True


async def test_group_by_key(stores: Any) -> None:
    await seed(stores)
    rows = {r.group: r for r in await stores.ledger.summarize(CostGroup.KEY)}
    assert rows["key_a"].cost_usd == Decimal("0.09109") and rows["key_a"].requests == 2
    assert rows["key_a"].images == 3 and rows["key_a"].estimated == 1
    assert rows["key_b"].cost_usd == Decimal("0.2")
    assert rows["(none)"].requests == 1 and rows["(none)"].cost_usd == 0


async def test_group_by_model_and_day(stores: Any) -> None:
    await seed(stores)
    models = {r.group: r.cost_usd for r in await stores.ledger.summarize(CostGroup.MODEL)}
    assert models["gpt-image-1"] == Decimal("0.21109") and models["dall-e-3"] == Decimal("0.08")
    days = {r.group: r.cost_usd for r in await stores.ledger.summarize(CostGroup.DAY)}
    assert days == {"2026-11-24": Decimal("0.09109"), "2026-11-25": Decimal("0.2")}


async def test_group_by_deployment_counts_attempts_once(stores: Any) -> None:
    await seed(stores)
    rows = {r.group: r for r in await stores.ledger.summarize(CostGroup.DEPLOYMENT)}
    assert rows["eus-1"].cost_usd == Decimal("0.09109") and rows["eus-1"].requests == 2
    assert rows["swe-1"].cost_usd == 0 and rows["swe-1"].requests == 1


async def test_since_until_and_total(stores: Any) -> None:
    await seed(stores)
    later = await stores.ledger.summarize(CostGroup.KEY, since=T0 + timedelta(minutes=30))
    assert {r.group: r.cost_usd for r in later} == {"key_a": Decimal("0.08"), "key_b": Decimal("0.2")}
    assert await stores.ledger.total(since=T0) == Decimal("0.29109")
    assert await stores.ledger.total(since=T0, until=T0 + timedelta(days=1)) == Decimal("0.09109")
    assert await stores.ledger.total(since=T0 + timedelta(days=5)) == 0
    assert len(await stores.ledger.entries(since=T0 + timedelta(hours=2))) == 1


async def test_record_many_writes_what_record_writes(stores: Any) -> None:
    rows = [
        request("r1", "key_a", "gpt-image-1", "0.01109", T0),
        attempt("r1", 1, "swe-1", "0", status="rate_limited"),
        attempt("r1", 2, "eus-1", "0.01109"),
        request("r2", "key_b", "dall-e-3", "0.0123456789", T0 + timedelta(hours=1), n=2, exact=False),
    ]
    await stores.ledger.record_many(rows)
    await stores.ledger.record_many([])  # a no-op, not an error
    back = await stores.ledger.entries()
    assert sorted((e.request_id, e.kind.value, e.attempt) for e in back) == [
        ("r1", "attempt", 1),
        ("r1", "attempt", 2),
        ("r1", "request", 0),
        ("r2", "request", 0),
    ]
    assert await stores.ledger.total(since=T0) == Decimal("0.023435679")
    [r2] = await stores.ledger.entries(request_id="r2")
    assert (r2.n, r2.cost_exact, r2.idempotency_key, r2.latency_ms) == (2, False, "idem-r2", 13_800.5)


async def test_record_many_is_all_or_nothing(stores: Any) -> None:
    naive = request("bad", "key_a", "gpt-image-1", "1", T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        await stores.ledger.record_many([request("ok", "key_a", "gpt-image-1", "1", T0), naive])
    assert await stores.ledger.entries() == []


@pytest.mark.parametrize("sql_engine", ["sqlite", "postgres"], indirect=True)
async def test_record_many_is_one_transaction_in_sql(sql_engine: Any) -> None:
    engine = sql_engine
    ledger = sql_stores_for(engine).ledger
    commits: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    event.listen(engine.sync_engine, "commit", on_commit)
    try:
        await ledger.record_many([attempt("rt", i, "swe-1", "0.01") for i in range(1, 51)])
    finally:
        event.remove(engine.sync_engine, "commit", on_commit)
    assert len(commits) == 1
    assert len(await ledger.entries(request_id="rt")) == 50


async def test_client_supplied_text_longer_than_its_column_is_cut_not_refused(stores: Any) -> None:
    """A client chooses the model name, size, quality, request id and idempotency key of the
    rows it causes; PostgreSQL refuses a value longer than its column (SQLite does not check),
    so a long one must be cut to fit rather than make the row unwritable on one backend."""
    long = replace(
        request("r" * 200, "key_a", "m" * 300, "0.01", T0),
        size="s" * 100,
        quality="q" * 100,
        idempotency_key="i" * 400,
        status="rejected",
    )
    await stores.ledger.record_many([long, request("short", "key_a", "gpt-image-1", "0.02", T0)])
    rows = {e.request_id[:5]: e for e in await stores.ledger.entries()}
    assert set(rows) == {"rrrrr", "short"}
    back = rows["rrrrr"]
    for name in ("request_id", "logical_model", "size", "quality", "idempotency_key"):
        stored, sent = getattr(back, name), getattr(long, name)
        assert stored and sent.startswith(stored), name
    assert back.cost_usd == Decimal("0.01")


async def test_images_count_only_what_was_made(stores: Any) -> None:
    from dataclasses import replace

    made = request("r1", "key_a", "default", "0.084", T0, n=2)
    refused = replace(request("r2", "key_a", "default", "0", T0, n=4), status="rejected", http_status=403)
    failed = replace(request("r3", "key_a", "default", "0", T0, n=3), status="error", http_status=502)
    await stores.ledger.record_many([made, refused, failed, attempt("r1", 1, "east", "0.084")])
    [row] = await stores.ledger.summarize(CostGroup.KEY)
    assert (row.requests, row.images, row.cost_usd) == (3, 2, Decimal("0.084"))
    failed_attempt = replace(attempt("r3", 1, "east", "0", status="upstream_failed"), n=0)
    await stores.ledger.record(failed_attempt)
    [east] = await stores.ledger.summarize(CostGroup.DEPLOYMENT)
    assert (east.requests, east.images) == (2, 1)
