"""Initial tables: virtual keys, budget windows and reservations, cost ledger, idempotency keys,
audit events. Money is integer nano-dollars; times are UTC.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ig_api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("max_quality", sa.String(length=32), nullable=True),
        sa.Column("max_n", sa.Integer(), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("budget_period", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_ig_api_keys_name", "ig_api_keys", ["name"], unique=False)
    op.create_table(
        "ig_audit_events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("prompt_sha256", sa.String(length=64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_ig_audit_events_at", "ig_audit_events", ["at"], unique=False)
    op.create_table(
        "ig_budget_reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("budget", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("actual_nanos", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", "budget", name="pk_ig_budget_reservations"),
    )
    op.create_index(
        "ix_ig_budget_reservations_state", "ig_budget_reservations", ["state", "created_at"], unique=False
    )
    op.create_table(
        "ig_budget_windows",
        sa.Column("budget", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("budget", "window_start", name="pk_ig_budget_windows"),
    )
    op.create_table(
        "ig_idempotency_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("idem_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("response_ref", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "idem_key", name="pk_ig_idempotency_keys"),
    )
    op.create_index("ix_ig_idempotency_keys_expires_at", "ig_idempotency_keys", ["expires_at"], unique=False)
    op.create_table(
        "ig_ledger_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("logical_model", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("deployment", sa.String(length=200), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("size", sa.String(length=32), nullable=True),
        sa.Column("quality", sa.String(length=32), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("text_in_tokens", sa.Integer(), nullable=False),
        sa.Column("image_in_tokens", sa.Integer(), nullable=False),
        sa.Column("image_out_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_exact", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ig_ledger_entries_request_id", "ig_ledger_entries", ["request_id"], unique=False)
    op.create_index(
        "ix_ig_ledger_entries_started_at", "ig_ledger_entries", ["kind", "started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ig_ledger_entries_started_at", table_name="ig_ledger_entries")
    op.drop_index("ix_ig_ledger_entries_request_id", table_name="ig_ledger_entries")
    op.drop_table("ig_ledger_entries")
    op.drop_index("ix_ig_idempotency_keys_expires_at", table_name="ig_idempotency_keys")
    op.drop_table("ig_idempotency_keys")
    op.drop_table("ig_budget_windows")
    op.drop_index("ix_ig_budget_reservations_state", table_name="ig_budget_reservations")
    op.drop_table("ig_budget_reservations")
    op.drop_index("ix_ig_audit_events_at", table_name="ig_audit_events")
    op.drop_table("ig_audit_events")
    op.drop_index("ix_ig_api_keys_name", table_name="ig_api_keys")
    op.drop_table("ig_api_keys")
