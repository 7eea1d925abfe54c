"""Budget windows and reservations name their period: a key's day, week and month windows were
one row whenever they started at the same moment (the primary key was budget and start only).

Existing rows take the period their key has now: the window the gateway read for it (rows of a
budget that is not a key's take ``month``). Downgrading adds the windows of one budget and start
back together, as the one row they were before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = ("ig_budget_windows", "ig_budget_reservations")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("period", sa.String(length=8), nullable=True))
        op.execute(
            f"UPDATE {table} SET period = COALESCE("
            f"(SELECT k.budget_period FROM ig_api_keys AS k WHERE 'key:' || k.id = {table}.budget), 'month')"
        )
    with op.batch_alter_table("ig_budget_windows") as batch:
        batch.alter_column("period", existing_type=sa.String(length=8), nullable=False)
        batch.drop_constraint("pk_ig_budget_windows", type_="primary")
        batch.create_primary_key("pk_ig_budget_windows", ["budget", "period", "window_start"])
    with op.batch_alter_table("ig_budget_reservations") as batch:
        batch.alter_column("period", existing_type=sa.String(length=8), nullable=False)


def downgrade() -> None:
    # one row per budget and start again: the first period's row takes the sums, the others go
    # (only that row is updated: SQLite's subqueries would see rows updated before them)
    w = "ig_budget_windows"
    same = f"o.budget = {w}.budget AND o.window_start = {w}.window_start"
    later = f"EXISTS (SELECT 1 FROM {w} AS o WHERE {same} AND o.period < {w}.period)"
    op.execute(
        f"UPDATE {w} SET spent_nanos = (SELECT SUM(o.spent_nanos) FROM {w} AS o WHERE {same}), "
        f"reserved_nanos = (SELECT SUM(o.reserved_nanos) FROM {w} AS o WHERE {same}) WHERE NOT {later}"
    )
    op.execute(f"DELETE FROM {w} WHERE {later}")
    with op.batch_alter_table(w) as batch:
        batch.drop_constraint("pk_ig_budget_windows", type_="primary")
        batch.create_primary_key("pk_ig_budget_windows", ["budget", "window_start"])
        batch.drop_column("period")
    with op.batch_alter_table("ig_budget_reservations") as batch:
        batch.drop_column("period")
