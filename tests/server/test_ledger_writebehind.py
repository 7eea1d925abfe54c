"""The gateway over SQLite batches its ledger and audit writes, and loses none at shutdown.

The real ``create_app`` (in-process emulator, open mode on loopback, SQLite in a temp directory) serves N
concurrent requests inside its lifespan; after the lifespan ends, a fresh connection to the same
file finds N request rows and N audit events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.ports import EntryKind
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
