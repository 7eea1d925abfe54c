"""Table definitions (SQLAlchemy Core) shared by the SQL adapters.

The tables are *created* only by the alembic revisions in ``stores/migrations``; a test runs
alembic's autogenerate comparison against a migrated database so this module and the migrations
cannot drift apart. Money columns are integer nano-dollars (see ``policy/budget.py``), times are
UTC (``UtcDateTime`` refuses naive datetimes and hands back aware ones on every backend).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "api_keys",
    "audit_events",
    "budget_reservations",
    "budget_windows",
    "fit_to_columns",
    "idempotency_keys",
    "ledger_entries",
    "metadata",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (naive text) and PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Autoincrement integer ids: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

api_keys = Table(
    "ig_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("models", Text, nullable=False),  # JSON list; empty = all models
    Column("max_quality", String(32)),
    Column("max_n", Integer),
    Column("rpm", Integer),
    Column("budget_nanos", BigInteger),
    Column("budget_period", String(8), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)
Index("ix_ig_api_keys_name", api_keys.c.name)

# A window is a budget's spend over one period: the period is part of its key, so a key's day,
# week and month windows never share a row, even when they start at the same moment.
budget_windows = Table(
    "ig_budget_windows",
    metadata,
    Column("budget", String(200), nullable=False),
    Column("period", String(8), nullable=False),  # day | week | month | total
    Column("window_start", UtcDateTime, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False),
    Column("reserved_nanos", BigInteger, nullable=False),
    PrimaryKeyConstraint("budget", "period", "window_start", name="pk_ig_budget_windows"),
)

budget_reservations = Table(
    "ig_budget_reservations",
    metadata,
    Column("id", String(40), nullable=False),
    Column("budget", String(200), nullable=False),
    Column("period", String(8), nullable=False),  # the window it holds money in: (budget, period, start)
    Column("window_start", UtcDateTime, nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),  # held | settled | released
    Column("actual_nanos", BigInteger),
    Column("created_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime),
    PrimaryKeyConstraint("id", "budget", name="pk_ig_budget_reservations"),
)
Index("ix_ig_budget_reservations_state", budget_reservations.c.state, budget_reservations.c.created_at)

ledger_entries = Table(
    "ig_ledger_entries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("key_id", String(32)),
    Column("logical_model", String(100)),
    Column("model", String(100)),
    Column("deployment", String(200)),
    Column("region", String(64)),
    Column("size", String(32)),
    Column("quality", String(32)),
    Column("n", Integer, nullable=False),
    Column("text_in_tokens", Integer, nullable=False),
    Column("image_in_tokens", Integer, nullable=False),
    Column("image_out_tokens", Integer, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("cost_exact", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("http_status", Integer),
    Column("error_code", String(64)),
    Column("latency_ms", Float),
    Column("idempotency_key", String(255)),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("day", String(10), nullable=False),  # UTC YYYY-MM-DD of started_at, for --by day
)
Index("ix_ig_ledger_entries_started_at", ledger_entries.c.kind, ledger_entries.c.started_at)
Index("ix_ig_ledger_entries_request_id", ledger_entries.c.request_id)

idempotency_keys = Table(
    "ig_idempotency_keys",
    metadata,
    Column("key_id", String(32), nullable=False),
    Column("idem_key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(12), nullable=False),  # in_progress | done
    Column("response_ref", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("key_id", "idem_key", name="pk_ig_idempotency_keys"),
)
Index("ix_ig_idempotency_keys_expires_at", idempotency_keys.c.expires_at)

audit_events = Table(
    "ig_audit_events",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_id", String(64)),
    Column("actor_name", String(200)),
    Column("action", String(64), nullable=False),
    Column("target", String(200)),
    Column("outcome", String(64), nullable=False),
    Column("request_id", String(64)),
    Column("cost_nanos", BigInteger),
    Column("prompt", Text),
    Column("prompt_sha256", String(64)),
    Column("details", Text, nullable=False),  # JSON object
)
Index("ix_ig_audit_events_at", audit_events.c.at)


def fit_to_columns(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function that cuts each string value to its ``String(n)`` column's length.

    For the append-only ledger and audit tables, whose text fields include what a client chose
    (its model name, size, quality, request id, idempotency key): PostgreSQL refuses a value
    longer than its column, SQLite stores it whole, so without this a long one would make the
    row unwritable on one backend only. A record cut short is better than none.
    """
    widths = {
        c.name: c.type.length
        for c in table.columns
        if isinstance(c.type, String) and not isinstance(c.type, Text) and c.type.length
    }

    def fit(values: dict[str, Any]) -> dict[str, Any]:
        for name, width in widths.items():
            value = values.get(name)
            if isinstance(value, str) and len(value) > width:
                values[name] = value[:width]
        return values

    return fit
