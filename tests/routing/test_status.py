"""``AsyncImageGate.status()``: what routing knows per deployment, through the library face,
against the in-process emulator in virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from imagegate import AsyncImageGate
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app

pytestmark = pytest.mark.looptime

ENDPOINT = "http://emulator.imagegate.invalid"


def gate_and_http() -> tuple[AsyncImageGate, httpx.AsyncClient]:
    loop = asyncio.get_running_loop()
    app = create_emulator_app(time_scale=0, clock=loop.time, sleep=asyncio.sleep)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)
    cfg = load(None, {}, today=dt.date(2026, 11, 24))
    gate = AsyncImageGate(cfg, http_client=http, sleep=asyncio.sleep, clock=loop.time, rand=lambda: 0.5)
    return gate, http


async def test_fresh_status_shows_the_configured_quota() -> None:
    gate, http = gate_and_http()
    async with gate:
        views = {v.name: v for v in await gate.status()}
    assert set(views) == {d.name for d in gate.config.deployments}
    v = views["gpt-image-1"]
    assert (v.breaker, v.effective_rpm, v.configured_rpm, v.headroom) == ("closed", 60.0, 60.0, 1.0)
    assert (v.window_used, v.window_allowed, v.window_s) == (0, 10, 10.0)
    assert v.reported_remaining is None and v.latency_s == {} and v.in_flight == 0
    await http.aclose()


async def test_after_a_429_storm_the_breaker_is_open_and_headroom_zero() -> None:
    gate, http = gate_and_http()
    storm = [{"kind": "status", "status": 429, "retry_after_s": 30}]
    assert (await http.put("/_emulator/deployments/gpt-image-1/faults", json=storm)).status_code == 200
    async with gate:
        results = [await gate.generate("a red fox", quality="low") for _ in range(3)]
        assert {r.deployment for r in results} == {"gpt-image-1-swc"}  # failed over
        views = {v.name: v for v in await gate.status()}
    stormed, healthy = views["gpt-image-1"], views["gpt-image-1-swc"]
    assert stormed.breaker == "open" and "429" in stormed.breaker_reason
    assert stormed.headroom == 0.0
    assert stormed.effective_rpm is not None and stormed.effective_rpm < 60
    # the healthy one: our 3 grants in its window, Azure's header agreeing, latency learnt
    assert healthy.breaker == "closed" and healthy.window_used == 3
    assert healthy.reported_remaining == 7 and healthy.reported_age_s is not None
    assert healthy.headroom == pytest.approx(0.7)
    assert set(healthy.latency_s) == set(healthy.latency_p95_s) == {"low", "*"}
    await http.aclose()
