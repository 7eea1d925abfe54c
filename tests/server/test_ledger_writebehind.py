"""The gateway over SQLite batches its ledger and audit writes, and loses none at shutdown.

The real ``create_app`` (in-process emulator, open mode on loopback, SQLite in a temp directory) serves N
concurrent requests inside its lifespan; after the lifespan ends, a fresh connection to the same
file finds N request rows and N audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.ports import EntryKind, KeyScope
from imagegate.server.app import create_app
from imagegate.server.settings import ServerSettings
from imagegate.stores.sql import open_sql_stores

ENDPOINT = "http://emulator.imagegate.invalid"
N = 16


async def test_concurrent_requests_are_all_in_the_ledger_after_shutdown(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    emulator = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    url = f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT) as upstream:
        app = create_app(
            load(None, {}, today=dt.date(2026, 11, 24)),
            http_client=upstream,
            settings=ServerSettings(
                data_dir=tmp_path, database_url=url, url_secret=b"ledger-tests-secret-16"
            ),
            open_access=None,  # decided at start-up: no keys, loopback: open
        )
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gw") as gw,
        ):

            async def one(i: int) -> str:
                r = await gw.post("/v1/images/generations", json={"prompt": f"fox {i}", "quality": "low"})
                assert r.status_code == 200, r.text
                return r.headers["x-request-id"]

            ids = await asyncio.gather(*(one(i) for i in range(N)))
            # /metrics shows what is still queued (not yet in the database): never negative
            metrics = (await gw.get("/metrics")).text
            assert "imagegate_ledger_pending_rows" in metrics
    stores = await open_sql_stores(url, run_migrations=False)
    try:
        rows = await stores.ledger.entries()
        events = [e async for e in stores.audit.export()]
    finally:
        await stores.aclose()
    assert sorted(e.request_id for e in rows if e.kind is EntryKind.REQUEST) == sorted(ids)
    assert all(any(e.request_id == rid and e.kind is EntryKind.ATTEMPT for e in rows) for rid in ids)
    assert sorted(e.request_id for e in events if e.action == "image.generate") == sorted(ids)


async def _requests_seen_by_another_connection(url: str) -> int:
    stores = await open_sql_stores(url, run_migrations=False)
    try:
        return sum(1 for e in await stores.ledger.entries() if e.kind is EntryKind.REQUEST)
    finally:
        await stores.aclose()


async def test_flush_interval_and_batch_size_come_from_the_settings(tmp_path: Path) -> None:
    """A long interval holds rows back (another process sees none) until shutdown drains them;
    a batch of 2 rows is written as soon as it is full, interval or not."""
    loop = asyncio.get_running_loop()
    emulator = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    for batch, expect_before in ((1000, 0), (2, 4)):
        url = f"sqlite+aiosqlite:///{tmp_path / f'batch{batch}.db'}"
        settings = ServerSettings(
            data_dir=tmp_path,
            database_url=url,
            url_secret=b"ledger-tests-secret-16",
            ledger_flush_s=60.0,
            ledger_batch_rows=batch,
            ledger_max_pending=10_000,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT
        ) as upstream:
            app = create_app(
                load(None, {}, today=dt.date(2026, 11, 24)),
                http_client=upstream,
                settings=settings,
                open_access=True,
            )
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
            ):
                for i in range(4):
                    r = await gw.post("/v1/images/generations", json={"prompt": f"fox {i}", "quality": "low"})
                    assert r.status_code == 200, r.text
                seen = 0
                for _ in range(100):  # a full batch is written by the flusher task: let it run
                    seen = await _requests_seen_by_another_connection(url)
                    if seen >= expect_before:
                        break
                    await asyncio.sleep(0.02)
                assert seen == expect_before, (batch, seen)
        assert await _requests_seen_by_another_connection(url) == 4  # drained at shutdown


class _SettlesOnceShutdownBegan:
    """The SQL budget ledger, whose ``settle`` waits until the lifespan shutdown has begun (its
    background tasks are stopped): a cancelled request's clean-up that is still running then."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def settle(self, *args: Any, **kwargs: Any) -> Any:
        sweeper = {t for t in asyncio.all_tasks() if t.get_name() == "imagegate-sweeper"}
        if sweeper:
            await asyncio.wait(sweeper)  # cancelled by the lifespan shutdown
        return await self._inner.settle(*args, **kwargs)


async def test_a_request_the_graceful_shutdown_cancels_is_in_the_ledger(tmp_path: Path) -> None:
    """uvicorn's graceful shutdown: when its timeout is over it cancels the requests still running
    and at once runs the app's lifespan shutdown, which drains and closes the write-behind. A
    cancelled request settles its budget hold and records itself (503, what its client gets; its
    estimate kept: the upstream was generating) only after that; before, its rows reached a
    closed queue and were lost ("the ledger write-behind is closed"), for exactly the requests a
    shutdown cut off."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}"
    now = dt.datetime.now(dt.UTC)
    stores = await open_sql_stores(url)
    try:
        new = await stores.keys.create("team", KeyScope(budget_usd=Decimal("1")), now)
    finally:
        await stores.aclose()
    reached = asyncio.Event()

    async def upstream_generating(request: httpx.Request) -> httpx.Response:
        reached.set()
        await asyncio.Event().wait()  # never answers before the shutdown
        raise AssertionError("unreachable")  # pragma: no cover

    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream_generating), base_url=ENDPOINT) as up:
        app = create_app(
            load(None, {}, today=dt.date(2026, 11, 24)),
            http_client=up,
            settings=ServerSettings(
                data_dir=tmp_path, database_url=url, url_secret=b"ledger-tests-secret-16", probe_tick_s=0
            ),
            open_access=False,
        )
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        governance = app.state.gateway.images.governance
        governance.budgets = _SettlesOnceShutdownBegan(governance.budgets)
        gw = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        body = {"prompt": "a fox", "quality": "low"}
        request = asyncio.create_task(
            gw.post("/v1/images/generations", json=body, headers={"api-key": new.plaintext})
        )
        await asyncio.wait_for(reached.wait(), timeout=30)
        request.cancel()  # "Cancel 1 running task(s), timeout graceful shutdown exceeded"
        await lifespan.__aexit__(None, None, None)  # then at once the lifespan shutdown
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await gw.aclose()
    stores = await open_sql_stores(url, run_migrations=False)
    try:
        rows = [e for e in await stores.ledger.entries() if e.kind is EntryKind.REQUEST]
        events = [e async for e in stores.audit.export()]
        budget = new.record.budget()
        assert budget is not None
        usage = await stores.budgets.usage(budget, now)
    finally:
        await stores.aclose()
    assert [(e.status, e.http_status, e.key_id) for e in rows] == [("cancelled", 503, new.record.id)]
    assert [(e.action, e.outcome) for e in events] == [("image.generate", "cancelled")]
    assert usage.reserved_usd == 0 and usage.spent_usd == rows[0].cost_usd > 0
