"""CPU per request of ``Governance.record`` on SQLite: per-row transactions vs batched.

What the gateway does after each image response: one ledger row for the request, one per
upstream attempt (one here, the common case) and one audit event. Three ways, same arrivals:

    per-row       the old way: one transaction per ledger row and one for the audit event (3)
    record_many   the request's ledger rows in one transaction, the audit event in another (2)
    write-behind  rows queued, flushed by ``stores.writebehind.WriteBehind`` in one transaction
                  per table per flush (the gateway's SQL path)

Requests arrive at ``--rate`` per second (each record runs as its own task, like Starlette's
background task). CPU is ``time.process_time`` (every thread: aiosqlite's worker included) over
the run plus the final drain, minus a baseline run that only arrives (no ledger, no audit);
medians of ``--repeat`` runs, each in a fresh SQLite file.
``.venv/bin/python bench/bench_ledger.py [--requests 400] [--rate 100] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from imagegate.ports import Ledger, LedgerEntry
from imagegate.server.governance import Caller, Governance
from imagegate.stores.engine import create_engine
from imagegate.stores.migrate import migrate
from imagegate.stores.sql import sql_stores_for
from imagegate.stores.writebehind import WriteBehind
from imagegate.types import AttemptRecord, Cost, ImageRequest, ImageResult, Usage

CALLER = Caller(key_id="key_bench", key_name="bench")
REQUEST = ImageRequest(prompt="a red fox in the snow", model="gpt-image-1", quality="low", size="1024x1024")
RESULT = ImageResult(
    images=(),
    model="gpt-image-1",
    deployment="gpt-image-1-swc",
    region="swedencentral",
    usage=Usage(input_tokens=10, output_tokens=272, total_tokens=282, input_text_tokens=10),
    cost=Cost(usd=Decimal("0.01109"), source="bench"),
    created=1_700_000_000,
    attempts=(AttemptRecord(number=1, deployment="gpt-image-1-swc", outcome="ok", status_code=200),),
)
MODES = ("per-row", "record_many", "write-behind")


class PerRow:
    """The old write path: ``record`` (one transaction) per ledger row."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner

    async def record_many(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            await self.inner.record(entry)


async def run(mode: str | None, n: int, rate: float, db: Path) -> float:
    """CPU seconds for ``n`` arrivals recorded the ``mode`` way (``None``: arrivals only)."""
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    await migrate(engine)
    sql = sql_stores_for(engine)
    writer = WriteBehind(sql.ledger, sql.audit) if mode == "write-behind" else None
    gov = Governance(now=lambda: datetime.now(UTC))
    if mode == "per-row":
        gov.ledger, gov.audit = PerRow(sql.ledger), sql.audit  # type: ignore[assignment]
    elif mode == "record_many":
        gov.ledger, gov.audit = sql.ledger, sql.audit
    elif writer is not None:
        gov.ledger, gov.audit = writer.ledger, writer.audit
    await sql.ledger.entries()  # open the pool's connection outside the measurement
    tasks = []
    started = datetime.now(UTC)
    cpu = time.process_time()
    for i in range(n):
        record = gov.record(
            caller=CALLER,
            request=REQUEST,
            request_id=f"req_{i}",
            started_at=started,
            result=RESULT,
            cost_usd=Decimal("0.01109"),
            cost_exact=True,
        )
        tasks.append(asyncio.create_task(record))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    if writer is not None:
        await writer.aclose()
    cpu = time.process_time() - cpu
    if mode is not None:
        assert len(await sql.ledger.entries()) == 2 * n, "every row written"
    await engine.dispose()
    return cpu


async def main(n: int, rate: float, repeat: int) -> None:
    results: dict[str, list[float]] = {m: [] for m in MODES}
    baselines = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            baselines.append(await run(None, n, rate, Path(tmp) / f"base-{r}.db"))
            for mode in MODES:
                results[mode].append(await run(mode, n, rate, Path(tmp) / f"{mode}-{r}.db"))
    base = statistics.median(baselines)
    per_request = {m: max(statistics.median(v) - base, 0.0) / n * 1000 for m, v in results.items()}
    print(f"Governance.record on SQLite: {n} requests at {rate:g}/s, median of {repeat}")
    print(
        "(1 request row + 1 attempt row + 1 audit event each; "
        f"arrivals-only baseline {base / n * 1000:.3f} ms/request subtracted)"
    )
    print(f"{'mode':<14}{'CPU ms/request':>16}{'vs per-row':>12}")
    old = per_request["per-row"]
    for mode in MODES:
        ms = per_request[mode]
        ratio = f"{old / ms:.1f}x less" if ms > 0 and mode != "per-row" else "1.0x"
        print(f"{mode:<14}{ms:>16.3f}{ratio:>12}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rate", type=float, default=100.0, help="arrivals per second")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rate, args.repeat))
