"""The one place a database URL becomes a SQLAlchemy ``AsyncEngine``.

Two backends are supported: ``sqlite+aiosqlite:///path`` (the embedded default, a file under the
data directory) and ``postgresql+asyncpg://...`` (several replicas). Plain ``sqlite:///`` and
``postgresql://`` are accepted and given their async driver.

SQLite is set up for a gateway's write pattern: WAL journal (readers never block the writer),
a busy timeout instead of instant "database is locked", and every writing transaction opened
with ``BEGIN IMMEDIATE`` so it takes the write lock up front. Without that, two deferred
transactions that both read and then write deadlock on the lock upgrade and one fails at once
(SQLITE_BUSY), which busy_timeout cannot help with (SQLAlchemy's documented aiosqlite recipe).
Read-only work goes through :func:`reader`, whose transactions begin ``DEFERRED``: they read a
WAL snapshot and never hold the lock writers need.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from imagegate.errors import ConfigError

__all__ = [
    "DEFAULT_DATA_DIR",
    "create_engine",
    "default_database_url",
    "is_sqlite",
    "normalize_url",
    "reader",
]

DEFAULT_DATA_DIR = Path(".imagegate")
_ALLOWED = "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host:port/db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "imagegate_read_only"
_SQLITE_BUSY = 5  # the primary result code behind "database is locked"


def default_database_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'imagegate.db'}"


def normalize_url(url: str) -> URL:
    """Parse and give the URL its async driver; ConfigError naming what is allowed otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError([f"database_url: cannot parse {_redact(url)!r}; expected {_ALLOWED}"]) from None
    async_driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        parsed.get_backend_name()
    )
    if async_driver is not None and parsed.drivername in (parsed.get_backend_name(), async_driver):
        return parsed.set(drivername=async_driver)
    raise ConfigError([f"database_url: unsupported driver {parsed.drivername!r}; expected {_ALLOWED}"])


def _redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{head.split(':')[0]}:***@{tail}" if at and ":" in head.split("//")[-1] else url


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, schema: str | None = None, echo: bool = False) -> AsyncEngine:
    """Build the engine. ``schema`` (PostgreSQL only) sets ``search_path``, e.g. for test isolation."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": False}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_async_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    if schema is not None:
        if not schema.replace("_", "").isalnum():
            raise ConfigError([f"database schema {schema!r}: use letters, digits and _ only"])
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    kwargs.update(pool_size=10, max_overflow=10, pool_timeout=60)
    return create_async_engine(parsed, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) issue BEGIN itself instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def _enter_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, waiting for other connections as busy_timeout does elsewhere.

    Switching a database to WAL needs it to itself, and SQLite answers "database is locked" at
    once when another connection holds it, without its busy handler: several processes opening
    a new database together (``serve --workers N`` at first start) failed at random. A database
    already in WAL mode needs no switch (the mode is kept in the file); a new one is retried
    for up to the busy timeout. Only ever waits while a new database is being created."""
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3.OperationalError, re-raised by SQLAlchemy's adapter
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # connection set-up, before the pool hands the connection out
        delay = min(delay * 2, 0.2)


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool) for read-only work: on SQLite its transactions begin DEFERRED,
    so a long report (``imagegate costs``) reads a WAL snapshot instead of holding the write lock
    the gateway needs. Elsewhere the option is ignored."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})
