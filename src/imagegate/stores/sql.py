"""One call from a database URL to every SQL-backed store: what a composition root needs.

stores = await open_sql_stores(url, pepper=config.key_pepper)   # migrates to head
try: ... stores.keys / stores.budgets / stores.ledger / stores.idempotency / stores.audit
finally: await stores.aclose()
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.policy.keys import DEFAULT_PEPPER
from imagegate.stores.engine import create_engine
from imagegate.stores.migrate import migrate
from imagegate.stores.sql_audit import SqlAuditLog
from imagegate.stores.sql_budget import SqlBudgetLedger
from imagegate.stores.sql_idempotency import SqlIdempotencyStore
from imagegate.stores.sql_keys import SqlKeyStore
from imagegate.stores.sql_ledger import SqlLedger

__all__ = ["SqlStores", "open_sql_stores", "sql_stores_for"]


@dataclass(frozen=True, slots=True)
class SqlStores:
    engine: AsyncEngine = field(repr=False)
    keys: SqlKeyStore
    budgets: SqlBudgetLedger
    ledger: SqlLedger
    idempotency: SqlIdempotencyStore
    audit: SqlAuditLog

    async def aclose(self) -> None:
        await self.engine.dispose()


def sql_stores_for(engine: AsyncEngine, *, pepper: bytes = DEFAULT_PEPPER) -> SqlStores:
    return SqlStores(
        engine=engine,
        keys=SqlKeyStore(engine, pepper=pepper),
        budgets=SqlBudgetLedger(engine),
        ledger=SqlLedger(engine),
        idempotency=SqlIdempotencyStore(engine),
        audit=SqlAuditLog(engine),
    )


async def open_sql_stores(
    url: str, *, pepper: bytes = DEFAULT_PEPPER, schema: str | None = None, run_migrations: bool = True
) -> SqlStores:
    """Engine + stores for ``url``; migrates to head first unless told not to."""
    engine = create_engine(url, schema=schema)
    if run_migrations:
        await migrate(engine)
    return sql_stores_for(engine, pepper=pepper)
