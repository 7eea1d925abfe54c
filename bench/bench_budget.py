"""Budget reservations per second: in-memory (baseline) vs SQLite vs PostgreSQL.

One "admission" is what the gateway does per request: reserve an estimate on two budgets (the
key's and a global one) and settle the actual cost. Measured sequentially and with 50 concurrent
requests; prints medians of 3 runs and each backend's ratio to the in-memory baseline.
PostgreSQL (127.0.0.1:5432, db ``test``) is skipped with a note when absent.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

from imagegate.policy.budget import BudgetSpec, Period
from imagegate.stores.engine import create_engine
from imagegate.stores.memory import MemoryBudgetLedger
from imagegate.stores.migrate import migrate
from imagegate.stores.sql_budget import SqlBudgetLedger

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
N = 300
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


async def admissions(ledger: Any, n: int, concurrency: int) -> float:
    specs = [
        BudgetSpec("global", Decimal(10**6), Period.MONTH),
        BudgetSpec("key:bench", Decimal(10**6), Period.MONTH),
    ]
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            r = await ledger.reserve(specs, Decimal("0.25"), NOW)
            await ledger.settle(r.id, Decimal("0.01109"), NOW)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def median_rate(
    make: Callable[[], Awaitable[tuple[Any, Callable[[], Awaitable[None]]]]], conc: int
) -> float:
    rates = []
    for _ in range(3):
        ledger, close = await make()
        try:
            rates.append(await admissions(ledger, N, conc))
        finally:
            await close()
    return statistics.median(rates)


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())

    async def memory() -> tuple[Any, Callable[[], Awaitable[None]]]:
        async def close() -> None:
            return None

        return MemoryBudgetLedger(), close

    async def sqlite() -> tuple[Any, Callable[[], Awaitable[None]]]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp / (secrets.token_hex(4) + '.db')}")
        await migrate(engine)
        return SqlBudgetLedger(engine), engine.dispose

    async def postgres() -> tuple[Any, Callable[[], Awaitable[None]]]:
        schema = f"ig_bench_{secrets.token_hex(4)}"
        admin = create_engine(PG_URL)
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = create_engine(PG_URL, schema=schema)
        await migrate(engine)

        async def close() -> None:
            await engine.dispose()
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            await admin.dispose()

        return SqlBudgetLedger(engine), close

    backends: list[tuple[str, Any]] = [("memory", memory), ("sqlite", sqlite)]
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        backends.append(("postgres", postgres))
    except OSError:
        print("postgres: skipped (nothing listening on 127.0.0.1:5432)")
    print(f"admissions (reserve on 2 budgets + settle), {N} per run, median of 3 runs")
    for conc in (1, 50):
        base = None
        for name, make in backends:
            rate = await median_rate(make, conc)
            base = base or rate
            print(
                f"  concurrency {conc:>2}  {name:<8} {rate:10.0f} admissions/s"
                f"   ratio to memory {rate / base:.4f}"
            )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
