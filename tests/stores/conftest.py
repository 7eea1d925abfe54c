"""Backends for the store contract suite: memory, SQLite (a temp file) and PostgreSQL.

PostgreSQL runs at 127.0.0.1:5432 (trust auth, database ``test``). Each test gets its own
schema (``ig_t_<session>_<n>``), migrated with the real alembic revisions and dropped afterwards.
When the server is absent the PostgreSQL cases skip with a message — unless
``IMAGEGATE_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from imagegate.stores.engine import create_engine
from imagegate.stores.memory import MemoryKeyStore, MemoryStores
from imagegate.stores.migrate import migrate
from imagegate.stores.redis_idempotency import RedisIdempotencyStore
from imagegate.stores.schema import metadata
from imagegate.stores.sql import sql_stores_for

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
SESSION = secrets.token_hex(3)
_counter = itertools.count()
TEST_PEPPER = b"test-pepper"
T = TypeVar("T")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with IMAGEGATE_REQUIRE_SERVICES=1, fail) when a service is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("IMAGEGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and IMAGEGATE_REQUIRE_SERVICES=1")
    pytest.skip(f"{message}; start it to run these tests (CI requires it)")


async def pg_schema_engine() -> tuple[Any, str]:
    schema = f"ig_t_{SESSION}_{next(_counter)}"
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


@pytest.fixture
async def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A migrated engine: SQLite or PostgreSQL, per ``request.param``."""
    kind = request.param
    if kind == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}")
        await migrate(engine)
        yield engine
        await engine.dispose()
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    engine, schema = await pg_schema_engine()
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
        await drop_pg_schema(schema)


@asynccontextmanager
async def open_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A store bundle (memory, sqlite or postgres), migrated, torn down afterwards."""
    if kind == "memory":
        yield MemoryStores(keys=MemoryKeyStore(pepper=TEST_PEPPER))
        return
    if kind == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}")
        await migrate(engine)
        try:
            yield sql_stores_for(engine, pepper=TEST_PEPPER)
        finally:
            await engine.dispose()
        return
    schema = request.getfixturevalue("pg_session_schema")
    engine = create_engine(PG_URL, schema=schema)
    try:
        async with engine.begin() as conn:  # a clean slate, without re-running the migrations
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        yield sql_stores_for(engine, pepper=TEST_PEPPER)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_session_schema() -> Iterator[str]:
    """One migrated schema for the whole session, dropped at the end; tests truncate its tables."""
    require_service("PostgreSQL", "127.0.0.1", 5432)

    async def setup() -> str:
        engine, schema = await pg_schema_engine()
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        return schema

    schema = _run_in_own_loop(setup())
    yield schema
    _run_in_own_loop(drop_pg_schema(schema))


def _run_in_own_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on a fresh loop in a thread: the caller may already be inside a running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Every adapter bundle, for the contract suite."""
    async with open_backend(request.param, tmp_path, request) as bundle:
        yield bundle


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def idempotency_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Every IdempotencyStore: the bundles' and the Redis one (unique namespace, cleaned up)."""
    if request.param != "redis":
        async with open_backend(request.param, tmp_path, request) as bundle:
            yield bundle.idempotency
        return
    require_service("Redis", "127.0.0.1", 6379)
    store = RedisIdempotencyStore.from_url(REDIS_URL, namespace=f"igtest-{SESSION}-{next(_counter)}")
    try:
        yield store
    finally:
        await store.purge_expired(datetime(9999, 1, 1, tzinfo=UTC))
        await store.aclose()


@pytest.fixture
def redis_url() -> str:
    """Redis at 127.0.0.1:6379 (skip, or fail under IMAGEGATE_REQUIRE_SERVICES=1, when absent)."""
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def service_gate() -> Callable[[str, str, int], None]:
    """:func:`require_service` itself, for the test that checks skip-versus-fail."""
    return require_service
