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


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 200, 10, 255)).save(buf, "PNG")
    return buf.getvalue()


async def _spend_within(gateway: Gateway, limit: str, call: Any) -> tuple[int, Decimal]:
    """Run ``call(headers)`` with a fresh key whose monthly budget is ``limit``; the answer's status
    and what the budget shows spent (never above the limit), with nothing left held."""
    key, key_id = await gateway.key(budget_usd=Decimal(limit))
    r = await call({"api-key": key})
    spec = (await gateway.stores.keys.get(key_id)).budget()  # type: ignore[union-attr]
    assert spec is not None
    usage = await gateway.stores.budgets.usage(spec, dt.datetime.now(dt.UTC))
    assert usage.reserved_usd == 0
    assert usage.spent_usd <= Decimal(limit), (r.status_code, r.headers.get("x-imagegate-cost-usd"))
    return r.status_code, usage.spent_usd


async def test_an_edit_never_spends_more_than_the_budget(gateway: Gateway) -> None:
    # two 1024x1024 images at high input fidelity: ~$0.064 billed (input image tokens), where the
    # estimate counted the output and the prompt only ($0.016): a $0.03 budget was overspent 2x
    image = _png(1024, 1024)

    async def edit(headers: dict[str, str]) -> httpx.Response:
        return await gateway.gw.post(
            "/v1/images/edits",
            data={"prompt": "add a hat", "model": "gpt-image-1", "quality": "low", "input_fidelity": "high"},
            files=[("image[]", ("a.png", image, "image/png")), ("image[]", ("b.png", image, "image/png"))],
            headers=headers,
        )

    status, spent = await _spend_within(gateway, "0.03", edit)
    assert (status, spent) == (429, 0)
    status, spent = await _spend_within(gateway, "1", edit)
    assert status == 200 and spent > Decimal("0.03")


async def test_a_stream_never_spends_more_than_the_budget(gateway: Gateway) -> None:
    # 3 partial images add 300 output tokens ($0.012) to a low-quality image's $0.011
    body = {"prompt": "a boat", "model": "gpt-image-1", "quality": "low", "size": "1024x1024"}
    body |= {"stream": True, "partial_images": 3}

    async def stream(headers: dict[str, str]) -> httpx.Response:
        return await gateway.gw.post(GEN, json=body, headers=headers)

    status, spent = await _spend_within(gateway, "0.015", stream)
    assert (status, spent) == (429, 0)
    status, spent = await _spend_within(gateway, "1", stream)
    assert status == 200 and spent > Decimal("0.015")


async def test_a_costlier_fallback_never_spends_more_than_the_budget(gateway: Gateway) -> None:
    # gpt-image-1-mini at low costs ~$0.002; its fallback dall-e-3 $0.04
    await gateway.fail("gpt-image-1-mini")

    async def cheap(headers: dict[str, str]) -> httpx.Response:
        return await gateway.gw.post(
            GEN, json={"prompt": "a fox", "model": "cheap", "quality": "low"}, headers=headers
        )

    status, spent = await _spend_within(gateway, "0.02", cheap)
    assert (status, spent) == (429, 0)
    assert (await gateway.billed_images())["dall-e-3"] == 0
    status, spent = await _spend_within(gateway, "1", cheap)
    assert (status, spent) == (200, Decimal("0.04"))


async def test_quality_auto_and_translated_qualities_are_priced_at_their_most(gateway: Gateway) -> None:
    # gpt-image-1-mini renders "auto" at up to high (~$0.036), not at its default medium ($0.011);
    # a dall-e-3 "hd" translated for gpt-image-1 was a 400 from the estimate instead of being served
    async def auto(headers: dict[str, str]) -> httpx.Response:
        body = {"prompt": "a fox", "model": "gpt-image-1-mini", "quality": "auto"}
        return await gateway.gw.post(GEN, json=body, headers=headers)

    status, _ = await _spend_within(gateway, "0.02", auto)
    assert status == 429

    async def translated(headers: dict[str, str]) -> httpx.Response:
        body = {"prompt": "a fox", "model": "gpt-image-1", "quality": "hd", "size": "1792x1024"}
        return await gateway.gw.post(GEN, json=body, headers={**headers, "x-imagegate-translate": "true"})

    status, spent = await _spend_within(gateway, "1", translated)
    assert status == 200 and spent > 0


async def test_a_key_is_never_served_by_a_fallback_model_it_may_not_use(gateway: Gateway) -> None:
    # the configured chain is default -> dall-e-3; a key allowed only "default" must not receive
    # (nor pay for) dall-e-3 images when gpt-image-1 fails, on either route shape
    await gateway.fail("gpt-image-1", "gpt-image-1-swc")
    only_default, _ = await gateway.key(models=("default",), budget_usd=Decimal("1"))
    azure = "/openai/deployments/default/images/generations?api-version=2025-04-01-preview"
    for route, body in ((GEN, {"prompt": "a fox", "model": "default"}), (azure, {"prompt": "a fox"})):
        r = await gateway.gw.post(route, json=body, headers={"api-key": only_default})
        # gpt-image-1's own failure (502), or its open breaker once the first request tripped it
        assert r.status_code in (502, 503), r.text[:300]
        assert "gpt-image-1" in r.json()["error"]["message"]
    assert (await gateway.billed_images())["dall-e-3"] == 0
    # a key that may use dall-e-3 as well is served by it, and the response says so
    with_dalle, _ = await gateway.key(models=("default", "dall-e-3"))
    r = await gateway.gw.post(
        GEN, json={"prompt": "a fox", "model": "default"}, headers={"api-key": with_dalle}
    )
    assert r.status_code == 200 and r.headers["x-imagegate-model"] == "dall-e-3"
    assert r.headers["x-imagegate-fallback-from"] == "gpt-image-1"


async def test_the_gateway_releases_holds_a_crashed_process_left_when_it_starts(tmp_path: Path) -> None:
    # a process that died between reserving and settling left money held; docs/gateway.md said
    # the gateway sweeps at start-up and every few minutes, but only `imagegate db sweep` did
    from imagegate.stores.sql import open_sql_stores

    url = f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}"
    now = dt.datetime.now(dt.UTC)
    stores = await open_sql_stores(url)
    try:
        new = await stores.keys.create("team", KeyScope(budget_usd=Decimal("1")), now)
        spec = new.record.budget()
        assert spec is not None
        await stores.budgets.reserve([spec], Decimal("0.25"), now - dt.timedelta(hours=2))  # crashed
        live = await stores.budgets.reserve([spec], Decimal("0.10"), now - dt.timedelta(minutes=10))
        await stores.idempotency.claim("key_x", "old", "fp", now - dt.timedelta(days=2), lease_s=60)
    finally:
        await stores.aclose()
    loop = asyncio.get_running_loop()
    emulator = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT) as upstream:
        app = create_app(
            load(None, {}, today=dt.date(2026, 11, 24)),
            http_client=upstream,
            settings=ServerSettings(
                data_dir=tmp_path, database_url=url, url_secret=b"costs-tests-secret-16", probe_tick_s=0
            ),
        )
        async with app.router.lifespan_context(app):
            pass
    stores = await open_sql_stores(url, run_migrations=False)
    try:
        usage = await stores.budgets.usage(spec, now)
        assert (usage.reserved_usd, usage.spent_usd) == (Decimal("0.10"), 0)  # the live one stays
        assert await stores.idempotency.get("key_x", "old") is None
        await stores.budgets.settle(live.id, Decimal("0.08"), now)
        assert (await stores.budgets.usage(spec, now)).spent_usd == Decimal("0.08")
    finally:
        await stores.aclose()
