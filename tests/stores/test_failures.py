"""An unreachable database or Redis is a StorageError (503) naming no secret, not a driver 500."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from imagegate.errors import BudgetExceeded, StorageError
from imagegate.policy.budget import BudgetSpec, Period
from imagegate.stores.engine import create_engine
from imagegate.stores.ratelimit import rate_limiter_for
from imagegate.stores.redis_idempotency import RedisIdempotencyStore
from imagegate.stores.sql import sql_stores_for

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_postgres_is_a_storage_error() -> None:
    engine = create_engine(f"postgresql+asyncpg://igadmin:hunter2secret@127.0.0.1:{closed_port()}/nope")
    stores = sql_stores_for(engine)
    try:
        with pytest.raises(StorageError) as info:
            await stores.keys.authenticate("ig-whatever")
        assert info.value.http_status == 503 and "retry later" in info.value.message
        assert "hunter2secret" not in info.value.message
        with pytest.raises(StorageError):
            [e async for e in stores.audit.export()]
    finally:
        await engine.dispose()


async def test_missing_tables_are_a_storage_error_but_our_errors_pass_through(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}")
    stores = sql_stores_for(engine)
    try:
        with pytest.raises(StorageError, match="OperationalError"):
            await stores.ledger.total(since=NOW)
    finally:
        await engine.dispose()
    from imagegate.stores.migrate import migrate

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}")
    await migrate(engine)
    try:
        with pytest.raises(BudgetExceeded):  # not swallowed into StorageError
            await sql_stores_for(engine).budgets.reserve(
                [BudgetSpec("b", Decimal(0), Period.DAY)], Decimal(1), NOW
            )
    finally:
        await engine.dispose()


async def test_unreachable_redis_is_a_storage_error() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    limiter = rate_limiter_for(url)
    with pytest.raises(StorageError, match="rate-limit store"):
        await limiter.hit("key_a", 10)
    store = RedisIdempotencyStore.from_url(url)
    try:
        with pytest.raises(StorageError, match="Redis"):
            await store.claim("key_a", "k", "fp", NOW, lease_s=60)
    finally:
        await store.aclose()
