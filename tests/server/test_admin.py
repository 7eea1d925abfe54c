"""Admin API: guarded by the admin key, keys created/listed/revoked, every change audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from imagegate.server.app import build_app
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.service import ImageService
from imagegate.server.state import GatewayState, ModelEntry
from imagegate.stores.memory import MemoryStores

from .fakes import FakeBackend

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ADMIN = "admin-secret-for-tests"


# what GET /v1/models lists: logical models, deployment names, catalog models (``models_of``)
SERVED = ("cheap", "gpt-image-1-swc", "gpt-image-1", "dall-e-3")


def _app(stores: MemoryStores, admin_key: str | None) -> httpx.AsyncClient:
    gov = Governance(
        keys=stores.keys, budgets=stores.budgets, ledger=stores.ledger, audit=stores.audit, now=lambda: NOW
    )
    metrics = GatewayMetrics()
    svc = ImageService(backend=FakeBackend(), governance=gov, metrics=metrics)
    models = tuple(ModelEntry(name) for name in SERVED)
    app = build_app(GatewayState(metrics=metrics, images=svc, admin_key=admin_key, models=lambda: models))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
def stores() -> MemoryStores:
    return MemoryStores()


@pytest.fixture
async def gw(stores: MemoryStores) -> AsyncIterator[httpx.AsyncClient]:
    async with _app(stores, ADMIN) as c:
        yield c


AUTH = {"authorization": f"Bearer {ADMIN}"}


async def test_admin_needs_the_admin_key(gw: httpx.AsyncClient) -> None:
    assert (await gw.get("/admin/keys")).status_code == 401
    assert (await gw.get("/admin/keys", headers={"authorization": "Bearer nope"})).status_code == 401
    assert (await gw.get("/admin/keys", headers=AUTH)).status_code == 200


async def test_admin_disabled_without_admin_key(stores: MemoryStores) -> None:
    async with _app(stores, None) as c:
        r = await c.get("/admin/keys", headers=AUTH)
    assert r.status_code == 403
    assert "IMAGEGATE_ADMIN_KEY" in r.json()["error"]["message"]


async def test_create_use_list_revoke(gw: httpx.AsyncClient, stores: MemoryStores) -> None:
    r = await gw.post(
        "/admin/keys",
        headers=AUTH,
        json={"name": "team-a", "models": ["default"], "rpm": 10, "budget_usd": "25.5"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith(created["prefix"]) and created["budget_usd"] == "25.5"
    ok = await gw.post("/v1/images/generations", json={"prompt": "x"}, headers={"api-key": key})
    assert ok.status_code == 200
    listed = (await gw.get("/admin/keys", headers=AUTH)).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert all("key" not in k for k in listed)
    r = await gw.delete(f"/admin/keys/{created['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["revoked_at"]
    denied = await gw.post("/v1/images/generations", json={"prompt": "x"}, headers={"api-key": key})
    assert denied.status_code == 401
    assert (await gw.get("/admin/keys", headers=AUTH)).json()["data"] == []
    assert len((await gw.get("/admin/keys?include_revoked=true", headers=AUTH)).json()["data"]) == 1
    actions = [e.action async for e in stores.audit.export() if e.actor_kind == "admin"]
    assert actions == ["key.create", "key.revoke"]


async def test_bad_key_body_is_400_naming_the_field(gw: httpx.AsyncClient) -> None:
    r = await gw.post("/admin/keys", headers=AUTH, json={"name": "x", "rpm": 0})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "rpm"
    r = await gw.post("/admin/keys", headers=AUTH, json={"name": "x", "colour": "red"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "colour"


async def test_a_model_the_gateway_does_not_serve_is_refused_naming_what_is(
    gw: httpx.AsyncClient, stores: MemoryStores
) -> None:
    # a typo used to be kept, and every request with the key was then a 403
    r = await gw.post("/admin/keys", headers=AUTH, json={"name": "x", "models": ["cheap", "gpt-imgae-1"]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "models" and "'gpt-imgae-1'" in err["message"]
    assert all(name in err["message"] for name in (*SERVED, "default"))  # default: no model named
    assert await stores.keys.list() == [] and [e async for e in stores.audit.export()] == []
    for name in (*SERVED, "default"):
        r = await gw.post("/admin/keys", headers=AUTH, json={"name": name, "models": [name]})
        assert r.status_code == 201, r.text


async def test_revoking_unknown_key_is_404(gw: httpx.AsyncClient) -> None:
    r = await gw.delete("/admin/keys/nope", headers=AUTH)
    assert r.status_code == 404
