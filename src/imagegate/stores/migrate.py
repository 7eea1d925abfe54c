"""Run the packaged alembic migrations programmatically: ``await migrate(url)`` at start-up.

The alembic scripts live inside the package (``stores/migrations``), so an installed wheel can
migrate its own database with no ``alembic.ini`` on disk. Upgrading is idempotent: at head it
does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.stores.engine import create_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "migrate"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


# Any fixed 64-bit number: the PostgreSQL advisory lock every imagegate process takes to migrate.
_MIGRATION_LOCK = 0x1A6E_6A7E


async def migrate(target: str | AsyncEngine, *, revision: str = "head") -> None:
    """Upgrade the database at ``target`` (a URL or an engine) to ``revision``.

    Several processes may start at once (``imagegate serve --workers N``, replicas), each
    migrating at start-up: one migrates, the others wait for it and then find the database at
    head. SQLite serialises the transactions itself (``BEGIN IMMEDIATE``); on PostgreSQL, DDL of
    concurrent transactions collides (duplicate ``pg_type`` rows), so each takes a
    transaction-scoped advisory lock first."""
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            await conn.run_sync(lambda sync_conn: command.upgrade(alembic_config(sync_conn), revision))
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
