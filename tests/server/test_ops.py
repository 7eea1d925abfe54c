"""/healthz, /readyz, /v1/models, /metrics and the served OpenAPI schema."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from imagegate.ports import KeyScope
from imagegate.server.app import build_app
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.service import ImageService
from imagegate.server.state import GatewayState, ModelEntry
from imagegate.stores.memory import MemoryStores

from .fakes import FakeBackend

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_reports_each_failing_check(state: GatewayState, client: httpx.AsyncClient) -> None:
    async def ok() -> str | None:
        return None

    async def down() -> str | None:
        return "database unreachable"

    async def broken() -> str | None:
        raise OSError("boom")

    state.readiness.update({"db": ok})
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == ["db"]
    state.readiness.update({"blobs": down, "upstream": broken})
    r = await client.get("/readyz")
    assert r.status_code == 503
    msg = r.json()["error"]["message"]
    assert "blobs: database unreachable" in msg and "upstream: OSError" in msg
    assert "db:" not in msg


async def test_models_list_in_openai_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-image-1", "dall-e-3"]
    assert all(m["object"] == "model" for m in body["data"])
    assert (await client.get("/v1/models/dall-e-3")).json()["id"] == "dall-e-3"
    r = await client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


MODEL_ROUTES = ("/v1/models", "/v1/models/dall-e-3", "/openai/models", "/openai/models/dall-e-3")


@pytest.fixture
async def keyed(stores: MemoryStores) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that checks virtual keys (not open mode), serving three models."""
    metrics = GatewayMetrics()
    service = ImageService(
        backend=FakeBackend(), governance=Governance(keys=stores.keys, now=lambda: NOW), metrics=metrics
    )
    models = (ModelEntry("default"), ModelEntry("gpt-image-1"), ModelEntry("dall-e-3"))
    state = GatewayState(metrics=metrics, images=service, models=lambda: models)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(state)), base_url="http://gw"
    ) as c:
        yield c


@pytest.fixture
def stores() -> MemoryStores:
    return MemoryStores()


async def test_the_model_list_needs_a_valid_key_when_the_gateway_checks_keys(
    keyed: httpx.AsyncClient, stores: MemoryStores
) -> None:
    """As OpenAI's: a gateway that requires keys does not show its models (deployment names
    among them) to anyone; missing, unknown and revoked keys get the image routes' 401."""
    revoked = await stores.keys.create("gone", KeyScope(), NOW)
    await stores.keys.revoke(revoked.record.id, NOW)
    for headers in (
        {},
        {"api-key": "ig-not-a-real-key-000000000"},
        {"authorization": f"Bearer {revoked.plaintext}"},
    ):
        image = await keyed.post("/v1/images/generations", json={"prompt": "x"}, headers=headers)
        assert image.status_code == 401
        for route in MODEL_ROUTES:
            r = await keyed.get(route, headers=headers)
            assert r.status_code == 401, (route, headers)
            assert r.json() == image.json()
            assert r.headers["x-should-retry"] == "false"


async def test_a_key_sees_the_models_it_may_use(keyed: httpx.AsyncClient, stores: MemoryStores) -> None:
    limited = (await stores.keys.create("limited", KeyScope(models=("dall-e-3", "gone")), NOW)).plaintext
    full = (await stores.keys.create("full", KeyScope(), NOW)).plaintext
    for listing in ("/v1/models", "/openai/models"):
        r = await keyed.get(listing, headers={"api-key": limited})
        assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["dall-e-3"]
        r = await keyed.get(listing, headers={"authorization": f"Bearer {full}"})
        assert [m["id"] for m in r.json()["data"]] == ["default", "gpt-image-1", "dall-e-3"]
    for one in ("/v1/models", "/openai/models"):
        assert (await keyed.get(f"{one}/dall-e-3", headers={"api-key": limited})).json()["id"] == "dall-e-3"
        r = await keyed.get(f"{one}/gpt-image-1", headers={"api-key": limited})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert (await keyed.get(f"{one}/gpt-image-1", headers={"api-key": full})).status_code == 200


async def test_the_model_list_stays_open_in_open_mode() -> None:
    metrics = GatewayMetrics()
    service = ImageService(backend=FakeBackend(), governance=Governance(keys=None), metrics=metrics)
    state = GatewayState(metrics=metrics, images=service, models=lambda: (ModelEntry("gpt-image-1"),))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(state)), base_url="http://gw"
    ) as c:
        for route in ("/v1/models", "/openai/models"):
            r = await c.get(route)
            assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["gpt-image-1"]
        assert (await c.get("/v1/models/gpt-image-1", headers={"api-key": "anything"})).status_code == 200


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/v1/models/dall-e-3")
    await client.get("/v1/models/gpt-image-1")
    text = (await client.get("/metrics")).text
    assert 'imagegate_requests_total{method="GET",route="/v1/models/{model_id}",status="200"} 2.0' in text
    assert "imagegate_request_duration_seconds_bucket" in text


async def test_each_app_has_its_own_registry(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    other: FastAPI = build_app(GatewayState())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://o") as c:
        text = (await c.get("/metrics")).text
    assert 'route="/healthz"' not in text


async def test_openapi_schema_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "imagegate"
    assert "/v1/models" in schema["paths"]


def test_models_of_config_lists_groups_deployments_and_models() -> None:
    from imagegate.config_load import load
    from imagegate.server.app import models_of

    config = load(None, {})  # zero config: the emulated deployments
    ids = [m.id for m in models_of(config)]
    assert ids[0] == "default"
    assert {"gpt-image-1", "gpt-image-1-swc", "dall-e-3"} <= set(ids)
    assert len(ids) == len(set(ids))
    for name in ids:
        assert config.deployments_for(name)


async def _readyz(tmp_path: Path, routing_url: str, limits_url: str) -> httpx.Response:
    """``/readyz`` of the real ``create_app`` with routing state and per-key rpm in Redis."""
    from imagegate.config_load import load
    from imagegate.server.app import create_app
    from imagegate.server.settings import ServerSettings

    (tmp_path / "gw.yaml").write_text(
        f"routing_state: {{backend: redis, url: '{routing_url}', prefix: 'readyz-{secrets.token_hex(4)}'}}\n"
    )
    config = load(tmp_path / "gw.yaml", {})
    settings = ServerSettings(data_dir=tmp_path, redis_url=limits_url, probe_tick_s=0)
    app = create_app(config, settings=settings, open_access=True)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        return await c.get("/readyz")


async def test_readyz_is_not_ready_while_the_shared_state_in_redis_is_down(tmp_path: Path) -> None:
    """With routing state (and per-key rpm) in Redis, every image request needs Redis: while it
    is down each one is a 503 ``storage_error``, so the gateway is not ready, and says why."""
    down = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    r = await _readyz(tmp_path, down, down)
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "routing:" in message and "rate_limits:" in message
    assert "Redis" in message


async def test_readyz_checks_redis_when_it_is_used(tmp_path: Path) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("IMAGEGATE_REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 and IMAGEGATE_REQUIRE_SERVICES=1")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379; start it to run this test")
    redis = "redis://127.0.0.1:6379/0"
    r = await _readyz(tmp_path, redis, redis)
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == ["images", "rate_limits", "routing", "stores"]
