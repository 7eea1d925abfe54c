"""The alembic revisions are the schema: they build exactly what schema.py declares, on both DBs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from imagegate.errors import ConfigError
from imagegate.stores.engine import create_engine, default_database_url, normalize_url
from imagegate.stores.migrate import alembic_config, current_revision, head_revision, migrate
from imagegate.stores.schema import metadata


@pytest.mark.parametrize("sql_engine", ["sqlite", "postgres"], indirect=True)
async def test_migrated_database_matches_schema_module(sql_engine: Any) -> None:
    async with sql_engine.connect() as conn:
        diffs = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
        )
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert diffs == []
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert await current_revision(sql_engine) == head_revision()


@pytest.mark.parametrize("sql_engine", ["sqlite", "postgres"], indirect=True)
async def test_migrate_is_idempotent_and_downgrades(sql_engine: Any) -> None:
    await migrate(sql_engine)  # already at head: nothing to do
    async with sql_engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    async with sql_engine.connect() as conn:
        left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert not {t.name for t in metadata.sorted_tables} & left
    await migrate(sql_engine)
    assert await current_revision(sql_engine) == head_revision()


async def test_migrate_by_url_creates_the_file_in_wal_mode(tmp_path: Path) -> None:
    url = default_database_url(tmp_path / "data")
    await migrate(url)
    assert (tmp_path / "data" / "imagegate.db").exists()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_get_their_async_driver(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("bad", ["mysql://u:secretpw@h/db", "not a url", "postgresql+psycopg://u@h/db"])
def test_unsupported_urls_are_config_errors_without_passwords(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_url(bad)
    assert "database_url" in str(info.value) and "sqlite+aiosqlite" in str(info.value)
    assert "secretpw" not in str(info.value)


async def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A long report must not stall the gateway's writes, nor wait for them (WAL + DEFERRED)."""
    from datetime import UTC, datetime

    from imagegate.ports import KeyScope
    from imagegate.stores.sql import sql_stores_for

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'rw.db'}")
    await migrate(engine)
    stores = sql_stores_for(engine)
    new = await stores.keys.create("a", KeyScope(), datetime.now(UTC))
    try:
        async with engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
            await writer.execute(text("UPDATE ig_api_keys SET name = 'b'"))
            # With BEGIN IMMEDIATE for reads too, this would block for the 30 s busy timeout.
            seen = await asyncio.wait_for(stores.keys.get(new.record.id), timeout=10)
            assert seen is not None and seen.name == "a"  # the committed snapshot
            assert (
                await asyncio.wait_for(stores.ledger.total(since=datetime(2000, 1, 1, tzinfo=UTC)), 10) == 0
            )
        assert (await stores.keys.get(new.record.id)).name == "b"  # type: ignore[union-attr]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_workers_migrating_a_new_database_at_once_all_succeed(
    kind: str, tmp_path: Path, service_gate: Callable[[str, str, int], None]
) -> None:
    """`imagegate serve --workers N` on an empty database: every worker migrates at start-up, at
    the same moment. One must do it and the others find it done, none may fail."""
    if kind == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}", None
        engines = [create_engine(url) for _ in range(4)]
    else:
        service_gate("PostgreSQL", "127.0.0.1", 5432)
        first, schema = await pg_schema_engine()
        engines = [first, *(create_engine(PG_URL, schema=schema) for _ in range(3))]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        assert {await current_revision(engine) for engine in engines} == {head_revision()}
    finally:
        for engine in engines:
            await engine.dispose()
        if schema is not None:
            await drop_pg_schema(schema)


async def test_a_new_database_another_process_is_creating_is_opened_once_it_is_free(
    tmp_path: Path,
) -> None:
    """SQLite answers "database is locked" at once, without its busy handler, to the switch to
    WAL while another connection is writing a new database (its first migration): workers that
    open a new database together failed at random. The switch now waits, as busy_timeout would."""
    import sqlite3

    path = tmp_path / "new.db"
    first = sqlite3.connect(path, isolation_level=None)  # another process, creating the tables
    first.execute("BEGIN IMMEDIATE")
    first.execute("CREATE TABLE t (x)")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:

        async def open_it() -> str:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one())

        opening = asyncio.create_task(open_it())
        await asyncio.sleep(0.05)  # it is waiting for the writer (before the fix: it had failed)
        assert not opening.done() or opening.exception() is None
        first.execute("COMMIT")
        assert await opening == "wal"
    finally:
        first.close()
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_budget_windows_gain_their_period_and_lose_it_again(
    kind: str, tmp_path: Path, service_gate: Callable[[str, str, int], None]
) -> None:
    """0002 keys budget windows by period too. A database at 0001 keeps its spend: each row takes
    its key's period (the window the gateway read), a held reservation still settles into it; a
    downgrade adds one budget's windows of one start back together."""
    if kind == "sqlite":
        engine, schema = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"), None
    else:
        service_gate("PostgreSQL", "127.0.0.1", 5432)
        engine, schema = await pg_schema_engine()
    from datetime import UTC, datetime
    from decimal import Decimal

    import sqlalchemy as sa

    from imagegate.policy.budget import BudgetSpec, Period
    from imagegate.stores.schema import UtcDateTime, api_keys
    from imagegate.stores.sql_budget import SqlBudgetLedger

    # the two tables as revision 0001 made them (no period)
    old_windows = sa.table(
        "ig_budget_windows",
        *(sa.column(c) for c in ("budget", "spent_nanos", "reserved_nanos")),
        sa.column("window_start", UtcDateTime),
    )
    old_reservations = sa.table(
        "ig_budget_reservations",
        *(sa.column(c) for c in ("id", "budget", "amount_nanos", "state")),
        sa.column("window_start", UtcDateTime),
        sa.column("created_at", UtcDateTime),
    )

    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        await migrate(engine, revision="0001")
        async with engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id="key_a", name="a", prefix="ig-a", secret_hash="0" * 64, models="[]",
                    budget_nanos=10**9, budget_period="month", created_at=now,
                )
            )  # fmt: skip
            await conn.execute(
                old_windows.insert(),
                [
                    {"budget": "key:a", "window_start": start, "spent_nanos": 1, "reserved_nanos": 0},
                    {
                        "budget": "key:key_a",
                        "window_start": start,
                        "spent_nanos": 4 * 10**8,
                        "reserved_nanos": 10**8,
                    },
                ],
            )
            await conn.execute(
                old_reservations.insert().values(
                    id="res_1", budget="key:key_a", window_start=start, amount_nanos=10**8, state="held",
                    created_at=now,
                )
            )  # fmt: skip
        await migrate(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT budget, period FROM ig_budget_windows ORDER BY budget"))
            ).all()
        assert [tuple(r) for r in rows] == [("key:a", "month"), ("key:key_a", "month")]
        budgets = SqlBudgetLedger(engine)
        spec = BudgetSpec("key:key_a", Decimal(1), Period.MONTH)
        await budgets.settle("res_1", Decimal("0.05"), now)
        usage = await budgets.usage(spec, now)
        assert (usage.spent_usd, usage.reserved_usd) == (Decimal("0.45"), 0)
        held = await budgets.reserve([BudgetSpec("key:key_a", Decimal(1), Period.DAY)], Decimal("0.2"), start)
        await budgets.settle(held.id, Decimal("0.2"), start)  # the 1st's day window, beside the month's
        assert (await budgets.usage(spec, now)).spent_usd == Decimal("0.45")

        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
        async with engine.connect() as conn:
            spent = (
                await conn.execute(
                    text("SELECT spent_nanos FROM ig_budget_windows WHERE budget = 'key:key_a'")
                )
            ).all()
        assert [r[0] for r in spent] == [650_000_000]  # one row, as 0001 kept it
    finally:
        await engine.dispose()
        if schema is not None:
            await drop_pg_schema(schema)


PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def pg_schema_engine() -> tuple[Any, str]:
    """A fresh, empty schema (not migrated) and an engine on it."""
    import secrets

    schema = f"ig_t_mig_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    await admin.dispose()
    return create_engine(PG_URL, schema=schema), schema


async def drop_pg_schema(schema: str) -> None:
    admin = create_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    await admin.dispose()
