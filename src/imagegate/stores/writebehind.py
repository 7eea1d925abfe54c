"""Write-behind for the ledger and the audit log: queue rows now, write them in batches later.

Why: recording a request used to cost three SQL transactions (request row, one per attempt, the
audit event), ~5-6 ms of CPU on the one event loop per image request, paid by every other
request in flight. Here ``record``/``record_many`` only append to a queue; one background task
writes what has queued with one ``record_many`` (one transaction, one executemany) per table per
flush, so the per-transaction cost is shared by every request of the flush.

    writer = WriteBehind(sql.ledger, sql.audit)      # composition root
    governance.ledger, governance.audit = writer.ledger, writer.audit
    ...
    await writer.aclose()                            # lifespan: drain, then close the engine

When: a flush starts ``flush_interval_s`` after the first row queued (0.05 s: a request's rows
reach the database, and the CLI's ``costs``/``audit``, well under a human's notice, and a crash
loses at most that much), or at once when ``max_batch`` rows are queued (500: about 150 requests;
one such executemany is a few ms on SQLite, short enough not to stall the loop or hold SQLite's
write lock for long). Reads through ``writer.ledger``/``writer.audit`` flush first, so whoever
reads in this process sees its own writes.

Failures: a write that raises :class:`StorageError` (database down, locked, refused) keeps its
rows and is retried with exponential backoff (``retry_initial_s`` doubling to ``retry_max_s``),
logged with the error's secret-free message, never the rows (an audit row may hold a prompt).
While it fails, rows keep queuing up to ``max_buffered`` per table (50 000: minutes of full
load, tens of MB); beyond that the oldest are dropped, counted (``on_drop``, a Prometheus counter
in the gateway) and reported by an ERROR line. A ``RowRefused`` (the database is up but refuses
the data: a NUL character in text, say) or any other exception means a row the store refuses as
such (a naive datetime, say): that batch is retried row by row and only the refused rows are
dropped, so one bad row cannot block the queue. ``aclose`` writes everything still queued,
retrying for up to ``drain_timeout_s`` before it gives up (and counts what it could not write).

Time is injected (``clock``, ``sleep``), so tests drive the interval and the backoff without
sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from imagegate.errors import ImageGateError, StorageError
from imagegate.ports import AuditEvent, AuditLog, CostGroup, CostRow, Ledger, LedgerEntry
from imagegate.stores.failures import RowRefused

__all__ = ["DropCounter", "WriteBehind", "WriteBehindAuditLog", "WriteBehindLedger"]

log = logging.getLogger("imagegate.stores")

T = TypeVar("T")
DropCounter = Callable[[str, str, int], None]
"""``on_drop(table, reason, rows)``: ``reason`` is ``overflow``, ``invalid`` or ``shutdown``."""

MAX_BATCH = 500
FLUSH_INTERVAL_S = 0.05
MAX_BUFFERED = 50_000


def _describe(exc: BaseException) -> str:
    """What a log line may say about a failure: our tree's messages are secret-free; a foreign
    exception's text may quote SQL parameters (a prompt), so only its type is named."""
    if isinstance(exc, ImageGateError):
        return f"{type(exc).__name__}: {exc.message}"
    return type(exc).__name__


class _Lane(Generic[T]):
    """The queue of one table and the call that writes a batch of it."""

    def __init__(self, table: str, write: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self.table = table
        self.write = write
        self.rows: deque[T] = deque()
        self.drop_reported = False  # one ERROR line per write attempt, however many rows drop

    def take(self, n: int) -> list[T]:
        rows = self.rows
        return [rows.popleft() for _ in range(min(n, len(rows)))]

    def put_back(self, batch: Sequence[T]) -> None:
        self.rows.extendleft(reversed(batch))


class WriteBehind:
    """Batches ledger rows and audit events for one ``Ledger`` and one ``AuditLog``."""

    def __init__(
        self,
        ledger: Ledger,
        audit: AuditLog,
        *,
        max_batch: int = MAX_BATCH,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_buffered: int = MAX_BUFFERED,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        drain_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_drop: DropCounter | None = None,
    ) -> None:
        if max_batch < 1 or max_buffered < max_batch:
            raise ValueError("need 1 <= max_batch <= max_buffered")
        self._ledger_lane: _Lane[LedgerEntry] = _Lane("ledger", ledger.record_many)
        self._audit_lane: _Lane[AuditEvent] = _Lane("audit", audit.record_many)
        self._lanes: tuple[_Lane[Any], ...] = (self._ledger_lane, self._audit_lane)
        self.ledger = WriteBehindLedger(self, ledger)
        self.audit = WriteBehindAuditLog(self, audit)
        self.max_batch = max_batch
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._drain_timeout_s = drain_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._on_drop = on_drop
        self._first_at = 0.0  # clock() when the oldest unflushed row was queued
        self._wake = asyncio.Event()  # something is queued (or we are closing)
        self._due = asyncio.Event()  # a full batch is queued (or we are closing)
        self._closed = asyncio.Event()  # aclose() was called
        self._lock = asyncio.Lock()  # one writer at a time: the flusher or a reader's flush()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._drain_deadline = 0.0

    # ---------------------------------------------------------------- queueing (no await)

    @property
    def pending(self) -> int:
        """Rows queued and not yet written (both tables)."""
        return len(self._ledger_lane.rows) + len(self._audit_lane.rows)

    def submit(self, entries: Sequence[LedgerEntry] = (), events: Sequence[AuditEvent] = ()) -> None:
        """Queue a request's ledger rows and audit events; returns at once."""
        if self._closing:
            raise RuntimeError("the ledger write-behind is closed; rows were not recorded")
        was_empty = self.pending == 0
        self._queue(self._ledger_lane, entries)
        self._queue(self._audit_lane, events)
        if was_empty and self.pending:
            self._first_at = self._clock()
            self._wake.set()
        if self.pending >= self.max_batch:
            self._due.set()
        if self._task is None or self._task.done():
            self._start()

    def _queue(self, lane: _Lane[T], rows: Sequence[T]) -> None:
        if not rows:
            return
        lane.rows.extend(rows)
        overflow = len(lane.rows) - self.max_buffered
        if overflow > 0:
            for _ in range(overflow):
                lane.rows.popleft()
            self._dropped(lane, "overflow", overflow)

    def _dropped(self, lane: _Lane[T], reason: str, rows: int) -> None:
        if self._on_drop is not None:
            self._on_drop(lane.table, reason, rows)
        if reason != "overflow" or not lane.drop_reported:
            lane.drop_reported = True
            log.error(
                "ledger write-behind: dropped %d %s row(s) (%s): %s",
                rows,
                lane.table,
                reason,
                {
                    "overflow": f"the buffer holds at most {self.max_buffered} while writes fail",
                    "invalid": "the store refused them",
                    "shutdown": "the store still failed when the drain timed out",
                }[reason],
            )

    def _drop_all(self, reason: str) -> None:
        """Give up every queued row (counted and logged per table)."""
        for lane in self._lanes:
            if lane.rows:
                self._dropped(lane, reason, len(lane.rows))
                lane.rows.clear()

    def _start(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                log.error("ledger write-behind: the flusher stopped (%s); restarting it", _describe(exc))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="imagegate-writebehind")

    # ---------------------------------------------------------------- writing

    async def flush(self) -> None:
        """Write everything queued when called (what a reader needs to see its own writes).
        Raises what the store raised; the rows stay queued for the flusher to retry."""
        async with self._lock:  # waits for a write in progress: its rows are written or back
            for lane in self._lanes:
                await self._drain_lane(lane, len(lane.rows))

    async def _drain_lane(self, lane: _Lane[T], count: int) -> None:
        while count > 0:
            batch = lane.take(min(count, self.max_batch))
            count -= len(batch)
            try:
                await lane.write(batch)
            except BaseException:
                lane.put_back(batch)
                raise

    async def aclose(self, *, timeout_s: float | None = None) -> None:
        """Stop taking rows and write every queued one, retrying a failing write for up to
        ``timeout_s`` (default ``drain_timeout_s``; what is left of a shutdown's time). The
        first write is always tried."""
        if not self._closing:
            self._closing = True
            drain_s = self._drain_timeout_s if timeout_s is None else timeout_s
            self._drain_deadline = self._clock() + drain_s
            self._wake.set()
            self._due.set()
            self._closed.set()
            if self.pending and (self._task is None or self._task.done()):
                self._start()
        if self._task is not None:
            await asyncio.wait({self._task})
        if self.pending:  # only if the flusher died of a bug: one last try, then count the loss
            try:
                await self.flush()
            except Exception as exc:
                log.error("ledger write-behind: the final flush failed (%s)", _describe(exc))
                self._drop_all("shutdown")

    async def _run(self) -> None:
        failures = 0
        while True:
            if failures == 0 and not self._closing:
                await self._until_due()
            if await self._write_batch():
                failures = 0
                if self._closing and not self.pending:
                    return
                continue
            failures += 1
            delay = min(self._retry_initial_s * 2 ** (failures - 1), self._retry_max_s)
            if self._closing:
                left = self._drain_deadline - self._clock()
                if left <= 0:
                    self._drop_all("shutdown")
                    return
                await self._sleep(min(delay, left))
            else:
                await self._sleep_unless(self._closed, delay)  # a shutdown cuts a backoff short

    async def _until_due(self) -> None:
        """Return when a batch is due: ``max_batch`` rows, the interval since the first row, or
        closing. Waits for a first row when nothing is queued."""
        while not self.pending:
            self._wake.clear()
            await self._wake.wait()
            if self._closing:
                return
        if self.pending >= self.max_batch:
            return
        remaining = self._first_at + self.flush_interval_s - self._clock()
        if remaining > 0:
            self._due.clear()
            await self._sleep_unless(self._due, remaining)

    async def _sleep_unless(self, event: asyncio.Event, seconds: float) -> None:
        """The injected ``sleep(seconds)``, cut short when ``event`` is set."""
        if event.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
            await asyncio.wait({sleeper, waiter})

    async def _write_batch(self) -> bool:
        """One flush: up to ``max_batch`` rows of each table, one ``record_many`` each.
        False when a write failed for a reason worth retrying (its rows are queued again)."""
        async with self._lock:
            ok = True
            for lane in self._lanes:
                lane.drop_reported = False
                batch = lane.take(self.max_batch)
                if batch and not await self._write(lane, batch):
                    ok = False
            if self.pending:
                self._first_at = self._clock()  # rows queued during the write: the next flush
            return ok

    async def _write(self, lane: _Lane[T], batch: list[T]) -> bool:
        try:
            await lane.write(batch)
            return True
        except RowRefused as exc:
            log.warning(
                "ledger write-behind: the database refused a batch of %d %s row(s) (%s); "
                "writing them one by one",
                len(batch),
                lane.table,
                _describe(exc),
            )
            return await self._write_one_by_one(lane, batch)
        except StorageError as exc:
            lane.put_back(batch)
            log.warning(
                "ledger write-behind: writing %d %s row(s) failed (%s); %d queued, retrying",
                len(batch),
                lane.table,
                _describe(exc),
                len(lane.rows),
            )
            return False
        except Exception as exc:
            log.warning(
                "ledger write-behind: the %s store refused a batch of %d (%s); writing it row by row",
                lane.table,
                len(batch),
                _describe(exc),
            )
            return await self._write_one_by_one(lane, batch)
        except BaseException:  # cancelled mid-write: nothing is lost
            lane.put_back(batch)
            raise

    async def _write_one_by_one(self, lane: _Lane[T], batch: list[T]) -> bool:
        refused = 0
        for i, row in enumerate(batch):
            try:
                await lane.write((row,))
            except RowRefused:
                refused += 1
            except StorageError:
                lane.put_back(batch[i:])  # the database itself fails now: retry the rest later
                if refused:
                    self._dropped(lane, "invalid", refused)
                return False
            except Exception:
                refused += 1
            except BaseException:
                lane.put_back(batch[i:])
                raise
        if refused:
            self._dropped(lane, "invalid", refused)
        return True


class WriteBehindLedger:
    """The ``Ledger`` port over a :class:`WriteBehind`: writes queue, reads flush first."""

    def __init__(self, writer: WriteBehind, inner: Ledger) -> None:
        self._writer = writer
        self._inner = inner

    async def record(self, entry: LedgerEntry) -> None:
        self._writer.submit(entries=(entry,))

    async def record_many(self, entries: Sequence[LedgerEntry]) -> None:
        self._writer.submit(entries=entries)

    async def summarize(
        self, by: CostGroup, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[CostRow]:
        await self._writer.flush()
        return await self._inner.summarize(by, since=since, until=until)

    async def total(self, *, since: datetime, until: datetime | None = None) -> Decimal:
        await self._writer.flush()
        return await self._inner.total(since=since, until=until)

    async def entries(
        self, *, request_id: str | None = None, since: datetime | None = None
    ) -> list[LedgerEntry]:
        await self._writer.flush()
        return await self._inner.entries(request_id=request_id, since=since)


class WriteBehindAuditLog:
    """The ``AuditLog`` port over a :class:`WriteBehind`: writes queue, export flushes first."""

    def __init__(self, writer: WriteBehind, inner: AuditLog) -> None:
        self._writer = writer
        self._inner = inner

    async def record(self, event: AuditEvent) -> None:
        self._writer.submit(events=(event,))

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        self._writer.submit(events=events)

    async def export(self, *, since: datetime | None = None) -> AsyncIterator[AuditEvent]:
        await self._writer.flush()
        async for event in self._inner.export(since=since):
            yield event
