"""What the ledger and the budgets make of real requests: the whole gateway (``create_app``) over
the in-process emulator, memory stores, fallback chains configured in YAML and faults scripted
through the emulator's admin API. The emulator's counters say what Azure would have billed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.ports import CostGroup, EntryKind, KeyScope
from imagegate.server.app import create_app
from imagegate.server.settings import ServerSettings
from imagegate.stores.memory import MemoryStores

ENDPOINT = "http://emulator.imagegate.invalid"
GEN = "/v1/images/generations"
FALLBACK_TO_DALLE = """
models:
  default: [gpt-image-1, gpt-image-1-swc]
  cheap: [gpt-image-1-mini]
routing:
  default: {fallbacks: [dall-e-3]}
  cheap: {fallbacks: [dall-e-3]}
"""


@dataclass
class Gateway:
    gw: httpx.AsyncClient
    upstream: httpx.AsyncClient
    stores: MemoryStores

    async def key(self, **scope: Any) -> tuple[str, str]:
        new = await self.stores.keys.create("team", KeyScope(**scope), dt.datetime.now(dt.UTC))
        return new.plaintext, new.record.id

    async def fail(self, *deployments: str) -> None:
        """Every request to these deployments answers 500 (Azure bills none of them)."""
        for name in deployments:
            r = await self.upstream.put(f"/_emulator/deployments/{name}/faults", json=[{"kind": "status"}])
            assert r.status_code == 200, r.text

    async def billed_images(self) -> dict[str, int]:
        body = (await self.upstream.get("/_emulator/deployments")).json()
        return {d["name"]: d["counters"]["images_billed"] for d in body["deployments"]}


@pytest.fixture
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    yaml = getattr(request, "param", FALLBACK_TO_DALLE)
    (tmp_path / "imagegate.yaml").write_text(yaml)
    loop = asyncio.get_running_loop()
    emulator = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    stores = MemoryStores()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT) as upstream:
        app = create_app(
            load(tmp_path / "imagegate.yaml", {}, today=dt.date(2026, 11, 24)),
            http_client=upstream,
            settings=ServerSettings(data_dir=tmp_path, url_secret=b"costs-tests-secret-16", probe_tick_s=0),
            keys=stores.keys,
            budgets=stores.budgets,
            ledger=stores.ledger,
            audit=stores.audit,
            idempotency=stores.idempotency,
            open_access=False,
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
        ):
            yield Gateway(gw, upstream, stores)


async def test_costs_by_deployment_add_up_to_costs_by_key_when_n_is_split(gateway: Gateway) -> None:
    # gpt-image-1 answers 500 everywhere; dall-e-3 (one image per call) makes the 3 images in 3
    # calls. Each of its 3 attempt rows carried the whole request's cost: by deployment, 3x.
    key, key_id = await gateway.key()
    await gateway.fail("gpt-image-1", "gpt-image-1-swc")
    r = await gateway.gw.post(GEN, json={"prompt": "a fox", "n": 3}, headers={"api-key": key})
    assert r.status_code == 200, r.text
    assert r.headers["x-imagegate-model"] == "dall-e-3"
    cost = Decimal(r.headers["x-imagegate-cost-usd"])
    assert cost == Decimal("0.12")  # 3 standard 1024x1024 images at $0.04
    ledger = gateway.stores.ledger
    by_key = await ledger.summarize(CostGroup.KEY)
    by_deployment = {row.group: row for row in await ledger.summarize(CostGroup.DEPLOYMENT)}
    assert [(row.group, row.requests, row.images, row.cost_usd) for row in by_key] == [(key_id, 1, 3, cost)]
    assert sum(row.cost_usd for row in by_deployment.values()) == cost
    assert (by_deployment["dall-e-3"].requests, by_deployment["dall-e-3"].images) == (3, 3)
    assert by_deployment["dall-e-3"].cost_usd == cost
    assert (by_deployment["gpt-image-1"].images, by_deployment["gpt-image-1"].cost_usd) == (0, 0)
    assert (await gateway.billed_images())["dall-e-3"] == 3
    attempts = [e for e in await ledger.entries() if e.kind is EntryKind.ATTEMPT and e.status == "ok"]
    assert [(e.cost_usd, e.n, e.cost_exact) for e in attempts] == [(Decimal("0.04"), 1, True)] * 3
