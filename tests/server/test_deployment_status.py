"""Routing's view per deployment through the gateway: ``/metrics`` gauges read at scrape time,
``GET /admin/status`` (guarded like ``/admin/keys``, open on loopback in open mode) and the
active prober started and stopped by the app's lifespan. The real gateway (``create_app``) over
the in-process emulator; the 429 storm runs in virtual time (looptime)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.errors import ConfigError
from imagegate.server.app import create_app
from imagegate.server.settings import ServerSettings, settings_from_environ

ENDPOINT = "http://emulator.imagegate.invalid"
ADMIN = "admin-secret-for-status-tests"


def _gateway(
    tmp_path: Path, *, admin_key: str | None = ADMIN, open_access: bool | None = True, **kw: Any
) -> tuple[FastAPI, httpx.AsyncClient]:
    loop = asyncio.get_running_loop()
    emulator = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT)
    settings = ServerSettings(
        admin_key=admin_key,
        url_secret=b"status-tests-secret-16",
        data_dir=tmp_path,
        probe_tick_s=kw.pop("tick", 0),
    )
    app = create_app(
        load(None, {}, today=dt.date(2026, 11, 24)),
        http_client=upstream,
        clock=loop.time,
        sleep=kw.pop("sleep", asyncio.sleep),
        settings=settings,
        open_access=open_access,
    )
    return app, upstream


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def _sample(metrics_text: str, name: str, deployment: str) -> float:
    prefix = f'{name}{{deployment="{deployment}"}} '
    lines = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"no single {prefix!r} sample in /metrics"
    return float(lines[0].removeprefix(prefix))


@pytest.mark.looptime
async def test_after_a_429_storm_metrics_and_status_show_the_breaker_open(tmp_path: Path) -> None:
    app, upstream = _gateway(tmp_path)
    storm = [{"kind": "status", "status": 429, "retry_after_s": 30}]
    assert (await upstream.put("/_emulator/deployments/gpt-image-1/faults", json=storm)).status_code == 200
    auth = {"authorization": f"Bearer {ADMIN}"}
    async with _client(app) as gw:
        before = (await gw.get("/metrics")).text
        assert _sample(before, "imagegate_breaker_state", "gpt-image-1") == 0.0  # closed
        for _ in range(3):
            r = await gw.post("/v1/images/generations", json={"prompt": "a red fox", "quality": "low"})
            assert r.status_code == 200, r.text
        text = (await gw.get("/metrics")).text
        status = await gw.get("/admin/status", headers=auth)
    assert _sample(text, "imagegate_breaker_state", "gpt-image-1") == 2.0  # open
    assert _sample(text, "imagegate_breaker_state", "gpt-image-1-swc") == 0.0
    assert _sample(text, "imagegate_quota_headroom", "gpt-image-1") == 0.0
    assert _sample(text, "imagegate_quota_headroom", "gpt-image-1-swc") == pytest.approx(0.7)
    assert _sample(text, "imagegate_quota_effective_rpm", "gpt-image-1") < 60
    assert "imagegate_requests_queued 0.0" in text
    assert status.status_code == 200
    body = status.json()
    rows = {row["name"]: row for row in body["data"]}
    assert body["queued"] == 0
    stormed, healthy = rows["gpt-image-1"], rows["gpt-image-1-swc"]
    assert stormed["breaker"]["state"] == "open" and "429" in stormed["breaker"]["reason"]
    assert stormed["breaker"]["open_for_s"] > 0
    assert stormed["quota"]["headroom"] == 0.0
    assert healthy["breaker"] == {
        "state": "closed",
        "reason": healthy["breaker"]["reason"],
        "open_for_s": None,
    }
    assert healthy["quota"]["window_used"] == 3 and healthy["quota"]["reported_remaining"] == 7
    assert set(healthy["latency_s"]) == set(healthy["latency_p95_s"]) == {"low", "*"}
    await upstream.aclose()


async def test_admin_status_is_guarded_by_the_admin_key(tmp_path: Path) -> None:
    app, upstream = _gateway(tmp_path, open_access=False)
    async with _client(app) as gw:
        assert (await gw.get("/admin/status")).status_code == 401
        assert (await gw.get("/admin/status", headers={"authorization": "Bearer nope"})).status_code == 401
        ok = await gw.get("/admin/status", headers={"authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200
    names = [row["name"] for row in ok.json()["data"]]
    assert names == [d.name for d in load(None, {}, today=dt.date(2026, 11, 24)).deployments]
    assert all(row["probe"] == "not probed" for row in ok.json()["data"])
    await upstream.aclose()


async def test_admin_status_without_admin_key_is_open_only_in_open_mode(tmp_path: Path) -> None:
    app, upstream = _gateway(tmp_path, admin_key=None, open_access=True)  # open mode (loopback)
    async with _client(app) as gw:
        assert (await gw.get("/admin/status")).status_code == 200
    app, upstream2 = _gateway(tmp_path, admin_key=None, open_access=False)  # keys required
    async with _client(app) as gw:
        r = await gw.get("/admin/status")
    assert r.status_code == 403 and "IMAGEGATE_ADMIN_KEY" in r.json()["error"]["message"]
    await upstream.aclose()
    await upstream2.aclose()


class ProbeTicks:
    """The prober's sleep: counts ticks, then parks until cancelled (and says it was)."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.ticked = asyncio.Event()
        self.cancelled = False

    async def __call__(self, seconds: float) -> None:
        self.ticks.append(seconds)
        self.ticked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_lifespan_runs_the_prober_and_stops_it_at_shutdown(tmp_path: Path) -> None:
    sleep = ProbeTicks()
    app, upstream = _gateway(tmp_path, tick=7.0, sleep=sleep)
    outage = [{"kind": "outage", "mode": "503"}]
    assert (await upstream.put("/_emulator/deployments/gpt-image-1/faults", json=outage)).status_code == 200
    async with app.router.lifespan_context(app), _client(app) as gw:
        assert len(_prober_tasks()) == 1
        await asyncio.wait_for(sleep.ticked.wait(), timeout=30)  # one pass over what is due
        rows = {row["name"]: row for row in (await gw.get("/admin/status", headers=_auth())).json()["data"]}
        assert not sleep.cancelled
    assert sleep.ticks == [7.0] and sleep.cancelled  # stopped by the shutdown, not before
    assert _prober_tasks() == []
    # no traffic at all, yet the outage is seen, and the healthy one is known to be reachable
    assert rows["gpt-image-1"]["probe"].startswith("unhealthy") and "503" in rows["gpt-image-1"]["probe"]
    assert rows["gpt-image-1-swc"]["probe"].startswith("healthy")
    await upstream.aclose()


async def test_tick_zero_turns_probing_off(tmp_path: Path) -> None:
    sleep = ProbeTicks()
    app, upstream = _gateway(tmp_path, tick=0, sleep=sleep)
    async with app.router.lifespan_context(app), _client(app) as gw:
        assert _prober_tasks() == []
        rows = (await gw.get("/admin/status", headers=_auth())).json()["data"]
    assert sleep.ticks == [] and all(row["probe"] == "not probed" for row in rows)
    await upstream.aclose()


def _prober_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "imagegate-prober" and not t.done()]


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}"}


def test_probe_tick_from_the_environment() -> None:
    assert settings_from_environ({}).probe_tick_s == 10.0
    assert settings_from_environ({"IMAGEGATE_PROBE_TICK_S": "0"}).probe_tick_s == 0.0
    with pytest.raises(ConfigError, match="IMAGEGATE_PROBE_TICK_S='-1'"):
        settings_from_environ({"IMAGEGATE_PROBE_TICK_S": "-1"})
