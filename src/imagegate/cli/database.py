"""What the governance commands (keys, costs, audit) share: where the database is, and opening it.

The database is ``--database-url``, else ``$IMAGEGATE_DATABASE_URL``, else the SQLite file
``imagegate.db`` in ``$IMAGEGATE_DATA_DIR`` (default ``.imagegate``) — the gateway's default too.
Key hashes are keyed with ``$IMAGEGATE_KEY_PEPPER`` (the gateway must be given the same one).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer

from imagegate.policy.keys import DEFAULT_PEPPER
from imagegate.stores.engine import DEFAULT_DATA_DIR, default_database_url
from imagegate.stores.sql import SqlStores, open_sql_stores

__all__ = ["database_option", "now_utc", "open_database", "pepper_option"]

database_option = typer.Option(
    None,
    "--database-url",
    envvar="IMAGEGATE_DATABASE_URL",
    help="sqlite+aiosqlite:///path or postgresql+asyncpg://... (default: .imagegate/imagegate.db).",
    show_envvar=True,
)
pepper_option = typer.Option(
    None,
    "--key-pepper",
    envvar="IMAGEGATE_KEY_PEPPER",
    help="Server-side secret mixed into key hashes; must match the gateway's.",
    show_default=False,
    hidden=True,
)


def now_utc() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def open_database(url: str | None, pepper: str | None = None) -> AsyncIterator[SqlStores]:
    key_pepper = pepper.encode() if pepper else DEFAULT_PEPPER
    data_dir = Path(os.environ.get("IMAGEGATE_DATA_DIR") or DEFAULT_DATA_DIR)
    stores = await open_sql_stores(url or default_database_url(data_dir), pepper=key_pepper)
    try:
        yield stores
    finally:
        await stores.aclose()
