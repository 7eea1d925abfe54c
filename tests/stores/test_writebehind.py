"""The write-behind recorder: batching, when it flushes, retries, the bound, reads, the drain.

Time is a fake: ``FakeTime.sleep`` blocks until the test calls ``advance()``, which moves the
clock by what was asked. Nothing here sleeps for real or looks at wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from imagegate.errors import StorageError
from imagegate.ports import AuditEvent, CostGroup, EntryKind, LedgerEntry
from imagegate.server.metrics import GatewayMetrics
from imagegate.stores.memory import MemoryAuditLog, MemoryLedger
from imagegate.stores.sql import sql_stores_for
from imagegate.stores.writebehind import WriteBehind

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PROMPT = "a secret prompt about a red fox"


def dropped_rows(metrics: GatewayMetrics, reason: str) -> float | None:
    """What ``imagegate_ledger_dropped_rows_total`` counted for the ledger table and ``reason``."""
    return metrics.registry.get_sample_value(
        "imagegate_ledger_dropped_rows_total", {"table": "ledger", "reason": reason}
    )


class FakeTime:
    """``clock``/``sleep`` for the recorder. ``auto=True``: a sleep moves the clock and returns."""

    def __init__(self, *, auto: bool = False) -> None:
        self.now = 0.0
        self.asked: list[float] = []
        self.auto = auto
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        if self.auto:
            self.now += seconds
            await asyncio.sleep(0)
            return
        waiter = (seconds, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiting.remove(waiter)

    @property
    def sleeping(self) -> bool:
        return bool(self._waiting)

    async def advance(self) -> None:
        """End the pending sleep(s): the clock moves by the longest one asked."""
        await settle()
        assert self._waiting, "nothing is sleeping"
        self.now += max(s for s, _ in self._waiting)
        for _, fut in list(self._waiting):
            fut.set_result(None)
        await settle()


async def settle() -> None:
    """Let the flusher run until it waits on something (the fakes never block)."""
    for _ in range(50):
        await asyncio.sleep(0)


@dataclass
class Recorder:
    """A memory store that notes each batch it is given and can be told to fail."""

    inner: Any
    batches: list[int] = field(default_factory=list)
    fail: int = 0  # the next ``fail`` writes raise StorageError

    async def record_many(self, rows: Sequence[Any]) -> None:
        if self.fail:
            self.fail -= 1
            raise StorageError("the database is unavailable or refused the operation (OperationalError)")
        await self.inner.record_many(rows)
        self.batches.append(len(rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def entries_of(rid: str, attempts: int = 2) -> list[LedgerEntry]:
    request = LedgerEntry(
        kind=EntryKind.REQUEST, request_id=rid, started_at=T0, status="ok", cost_usd=Decimal("0.01")
    )
    return [request, *(replace(request, kind=EntryKind.ATTEMPT, attempt=i) for i in range(1, attempts + 1))]


def event_of(rid: str) -> AuditEvent:
    return AuditEvent(
        at=T0, actor_kind="key", action="image.generate", outcome="ok", request_id=rid, prompt=PROMPT
    )


def make(time: FakeTime, **kw: Any) -> tuple[WriteBehind, Recorder, Recorder]:
    ledger, audit = Recorder(MemoryLedger()), Recorder(MemoryAuditLog())
    return WriteBehind(ledger, audit, clock=time.clock, sleep=time.sleep, **kw), ledger, audit


async def request_ids(writer: WriteBehind) -> list[str]:
    return [e.request_id for e in await writer.ledger.entries() if e.kind is EntryKind.REQUEST]


async def test_many_requests_go_out_in_one_flush_per_table() -> None:
    time = FakeTime()
    writer, ledger, audit = make(time)
    for i in range(10):  # what Governance.record does per request: no await on the database
        await writer.ledger.record_many(entries_of(f"r{i}"))
        await writer.audit.record(event_of(f"r{i}"))
    await settle()
    assert ledger.batches == [] and writer.pending == 40
    await time.advance()
    assert ledger.batches == [30] and audit.batches == [10] and writer.pending == 0
    assert time.asked == [writer.flush_interval_s]


async def test_a_full_batch_flushes_without_waiting_for_the_interval() -> None:
    time = FakeTime()
    writer, ledger, audit = make(time, max_batch=8)
    for i in range(3):
        writer.submit(entries_of(f"r{i}"), [event_of(f"r{i}")])  # 12 rows >= 8
    await settle()
    assert ledger.batches == [8] and audit.batches == [3]  # at most max_batch per table per flush
    assert writer.pending == 1 and time.sleeping  # the one left waits for the interval
    await time.advance()
    assert ledger.batches == [8, 1] and writer.pending == 0


async def test_the_interval_runs_from_the_first_queued_row() -> None:
    time = FakeTime()
    writer, ledger, _ = make(time, flush_interval_s=0.05)
    writer.submit(entries_of("r1"))
    await settle()
    assert ledger.batches == [] and time.asked == [0.05]
    time.now += 0.03  # a second request later does not restart the wait
    writer.submit(entries_of("r2"))
    await time.advance()
    assert ledger.batches == [6] and time.asked == [0.05]
    writer.submit(entries_of("r3"))  # a new first row: a new interval
    await settle()
    assert time.asked == [0.05, 0.05]
    await time.advance()
    assert ledger.batches == [6, 3]


async def test_a_failing_store_keeps_the_rows_and_is_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    writer, ledger, audit = make(time, retry_initial_s=0.1, retry_max_s=0.3)
    ledger.fail = audit.fail = 3
    writer.submit(entries_of("r1"), [event_of("r1")])
    with caplog.at_level(logging.WARNING, logger="imagegate.stores"):
        await time.advance()  # the interval: first attempt fails
        for _ in range(3):  # three backoffs, the last attempt succeeds
            assert writer.pending == 4 and ledger.batches == []
            await time.advance()
    assert time.asked == [0.05, 0.1, 0.2, 0.3]  # doubling, capped at retry_max_s
    assert ledger.batches == [3] and audit.batches == [1] and writer.pending == 0
    assert await request_ids(writer) == ["r1"]  # written once, not once per attempt
    assert "OperationalError" in caplog.text and "retrying" in caplog.text
    assert PROMPT not in caplog.text


async def test_beyond_the_bound_the_oldest_are_dropped_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    metrics = GatewayMetrics()
    writer, ledger, _ = make(time, max_batch=5, max_buffered=5, on_drop=metrics.observe_ledger_drop)
    ledger.fail = 1
    writer.submit(entries_of("r0"))  # 3 rows
    await time.advance()  # the write fails: the rows stay
    assert writer.pending == 3
    with caplog.at_level(logging.ERROR, logger="imagegate.stores"):
        writer.submit(entries_of("r1"))  # 6 rows > 5: the oldest goes
        writer.submit(entries_of("r2"))  # 9 rows > 5: three more
    assert writer.pending == 5
    assert dropped_rows(metrics, "overflow") == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dropped" in errors[0].getMessage()  # one line per write attempt
    await time.advance()  # the backoff ends; the store works again
    await writer.flush()
    rows = [(e.request_id, e.attempt) for e in await writer.ledger.entries()]
    assert rows == [("r1", 1), ("r1", 2), ("r2", 0), ("r2", 1), ("r2", 2)]  # r0 and r1's first went


async def test_reads_flush_first() -> None:
    time = FakeTime()
    writer, ledger, audit = make(time)
    await writer.ledger.record_many(entries_of("r1"))
    await writer.audit.record(event_of("r1"))
    assert await request_ids(writer) == ["r1"]  # long before the interval
    assert [e.request_id async for e in writer.audit.export()] == ["r1"]
    assert await writer.ledger.total(since=T0) == Decimal("0.01")
    assert [r.requests for r in await writer.ledger.summarize(CostGroup.KEY)] == [1]
    assert ledger.batches == [3] and audit.batches == [1]


async def test_a_read_while_the_store_fails_raises_and_keeps_the_rows() -> None:
    time = FakeTime()
    writer, ledger, _ = make(time)
    writer.submit(entries_of("r1"))
    ledger.fail = 1
    with pytest.raises(StorageError):
        await writer.ledger.entries()
    assert writer.pending == 3
    assert await request_ids(writer) == ["r1"]


async def test_a_row_the_store_refuses_does_not_block_the_others() -> None:
    time = FakeTime()
    metrics = GatewayMetrics()
    writer, _, _ = make(time, on_drop=metrics.observe_ledger_drop)
    naive = replace(entries_of("bad", attempts=0)[0], started_at=T0.replace(tzinfo=None))
    writer.submit([*entries_of("r1", attempts=0), naive, *entries_of("r2", attempts=0)])
    await time.advance()
    assert sorted(await request_ids(writer)) == ["r1", "r2"] and writer.pending == 0
    assert dropped_rows(metrics, "invalid") == 1


async def test_close_drains_everything_then_refuses_new_rows() -> None:
    time = FakeTime()
    writer, ledger, audit = make(time, max_batch=4)
    for i in range(5):
        writer.submit(entries_of(f"r{i}"), [event_of(f"r{i}")])
    await settle()
    await writer.aclose()  # no advance(): the drain does not wait for the interval
    assert sum(ledger.batches) == 15 and sum(audit.batches) == 5 and writer.pending == 0
    assert max(ledger.batches) <= 4
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(entries_of("late"))


async def test_close_with_nothing_queued_and_no_flusher_is_quick() -> None:
    writer, ledger, _ = make(FakeTime())
    await writer.aclose()
    assert ledger.batches == []


async def test_close_retries_a_failing_store_until_the_drain_timeout() -> None:
    time = FakeTime(auto=True)
    metrics = GatewayMetrics()
    writer, ledger, _ = make(
        time, retry_initial_s=1.0, retry_max_s=4.0, drain_timeout_s=10.0, on_drop=metrics.observe_ledger_drop
    )
    writer.submit(entries_of("r1"))
    ledger.fail = 2  # comes back within the drain timeout: nothing lost
    await writer.aclose()
    assert ledger.batches == [3] and writer.pending == 0
    writer2, ledger2, _ = make(
        time, retry_initial_s=1.0, retry_max_s=4.0, drain_timeout_s=10.0, on_drop=metrics.observe_ledger_drop
    )
    writer2.submit(entries_of("r2"))
    ledger2.fail = 1_000  # never comes back: given up after the timeout, and counted
    await writer2.aclose()
    assert ledger2.batches == [] and writer2.pending == 0
    assert dropped_rows(metrics, "shutdown") == 3


async def test_close_within_what_is_left_of_a_shutdown() -> None:
    """``aclose(timeout_s=...)``: the drain fits in what a graceful shutdown has left, however
    long ``drain_timeout_s`` is; the first write is tried even with no time left."""
    time = FakeTime(auto=True)
    writer, ledger, _ = make(time, retry_initial_s=1.0, retry_max_s=4.0, drain_timeout_s=600.0)
    writer.submit(entries_of("r1"))
    ledger.fail = 1_000
    start = time.now
    await writer.aclose(timeout_s=3.0)
    assert writer.pending == 0 and time.now - start <= 3.0  # fake time: given up within 3 s
    writer2, ledger2, _ = make(time)
    writer2.submit(entries_of("r2"))
    await writer2.aclose(timeout_s=0.0)
    assert ledger2.batches == [3]


async def test_close_cuts_a_backoff_short() -> None:
    time = FakeTime()
    writer, ledger, _ = make(time, retry_initial_s=5.0)
    ledger.fail = 1
    writer.submit(entries_of("r1"))
    await time.advance()  # first write fails; now in a 5 s backoff
    assert time.sleeping and time.asked[-1] == 5.0
    await writer.aclose()
    assert ledger.batches == [3]


@pytest.mark.parametrize("sql_engine", ["sqlite", "postgres"], indirect=True)
async def test_a_row_the_database_refuses_does_not_block_the_others(sql_engine: Any) -> None:
    """A client can put a NUL character in the model it names (``"\\u0000"`` is valid JSON);
    PostgreSQL refuses it in a text column (SQLite keeps it). That refusal says nothing about
    the database being down: the row is dropped and counted, the others are written. (Retrying
    it as if the database were down would hold back every later row until the buffer overflowed.)"""
    time = FakeTime()
    metrics = GatewayMetrics()
    sql = sql_stores_for(sql_engine)
    writer = WriteBehind(
        sql.ledger, sql.audit, clock=time.clock, sleep=time.sleep, on_drop=metrics.observe_ledger_drop
    )
    [bad] = entries_of("bad", attempts=0)
    bad = replace(bad, logical_model="nul\x00model")
    writer.submit([*entries_of("r1", attempts=0), bad, *entries_of("r2", attempts=0)])
    await time.advance()
    assert writer.pending == 0
    written = await request_ids(writer)
    assert {"r1", "r2"} <= set(written)
    assert ("bad" in written) != (dropped_rows(metrics, "invalid") == 1)
    await writer.aclose()
