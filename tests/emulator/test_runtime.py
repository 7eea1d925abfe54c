"""Latency (time scale, defaults), the concurrency limit, url expiry, streaming in process, chat,
and the run-time knobs of create_emulator_app."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from emulator.support import KEY, AppFactory, FakeClock, RecordingSleep, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig
from imagegate.emulator.config import LatencySpec

BODY = {"prompt": "lat", "quality": "low"}


def one(**kw: object) -> EmulatorConfig:
    return EmulatorConfig(
        deployments=(DeploymentSpec(name="d", model="gpt-image-1", image_bytes="small", **kw),)
    )


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 2.0), (0.5, 1.0), (0.0, None)])
async def test_time_scale_multiplies_latency(
    make_app: AppFactory, sleeper: RecordingSleep, scale: float, expected: float | None
) -> None:
    cfg = one(latency=LatencySpec(median_s=2.0, distribution="fixed"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(cfg, time_scale=scale)), base_url="http://e"
    ) as c:
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200
    assert sleeper.calls == ([] if expected is None else [pytest.approx(expected)])


async def test_default_latency_grows_with_output_tokens(
    make_app: AppFactory, sleeper: RecordingSleep
) -> None:
    cfg = one(latency=LatencySpec(distribution="fixed"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(cfg, time_scale=1.0)), base_url="http://e"
    ) as c:
        await c.post(gen_url("d"), headers=KEY, json={"prompt": "a", "quality": "low"})
        await c.post(gen_url("d"), headers=KEY, json={"prompt": "a", "quality": "high"})
    assert sleeper.calls == [pytest.approx(3 + 272 / 200), pytest.approx(3 + 4160 / 200)]


async def test_lognormal_latency_spreads_around_the_median(
    make_app: AppFactory, sleeper: RecordingSleep
) -> None:
    cfg = one(rpm=100000, latency=LatencySpec(median_s=10, p95_s=20))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(cfg, time_scale=1.0)), base_url="http://e"
    ) as c:
        for _ in range(200):
            await c.post(gen_url("d"), headers=KEY, json=BODY)
    samples = sorted(sleeper.calls)
    assert 8 < samples[100] < 12.5
    assert 15 < samples[190] < 27


async def test_concurrency_limit(make_app: AppFactory, clock: FakeClock) -> None:
    gate = asyncio.Event()

    async def held(seconds: float) -> None:
        await gate.wait()

    cfg = one(concurrency=2, latency=LatencySpec(median_s=1, distribution="fixed"))
    app = make_app(cfg, time_scale=1.0, sleep=held)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
        first = [asyncio.create_task(c.post(gen_url("d"), headers=KEY, json=BODY)) for _ in range(2)]
        await asyncio.sleep(0.05)
        third = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        gate.set()
        assert [(await t).status_code for t in first] == [200, 200]
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200


async def test_url_expires_after_24_hours(client: httpx.AsyncClient, clock: FakeClock) -> None:
    r = await client.post(gen_url("dall-e-3", "2024-10-21"), headers=KEY, json={"prompt": "expiring"})
    url = r.json()["data"][0]["url"]
    assert "se=" in url
    clock.advance(23 * 3600)
    assert (await client.get(url)).status_code == 200
    clock.advance(3600)
    expired = await client.get(url)
    assert expired.status_code == 403 and b"AuthenticationFailed" in expired.content
    assert (await client.get("/private/images/nope/generated_00.png")).status_code == 404


async def test_stream_spreads_latency_over_events(make_app: AppFactory, sleeper: RecordingSleep) -> None:
    cfg = one(latency=LatencySpec(median_s=9, distribution="fixed"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(cfg, time_scale=1.0)), base_url="http://e"
    ) as c:
        r = await c.post(gen_url("d"), headers=KEY, json={**BODY, "stream": True, "partial_images": 2})
    assert r.text.count("event: ") == 3
    assert sleeper.calls == [pytest.approx(3)] * 3


async def test_chat_reply_usage_and_v1(client: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "rewrite"},
        {"role": "user", "content": [{"type": "text", "text": "a cat."}]},
    ]
    r = await client.post(
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        headers=KEY,
        json={"messages": messages},
    )
    body = r.json()
    assert (
        body["choices"][0]["message"]["content"]
        == "a cat, highly detailed, balanced composition, soft natural light"
    )
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    v1 = await client.post(
        "/openai/v1/chat/completions",
        headers={"authorization": "Bearer emulator-key"},
        json={"model": "gpt-4o", "messages": messages},
    )
    assert v1.json()["choices"] == body["choices"]
    for bad in ({}, {"messages": []}, {"messages": ["x"]}, {"messages": messages, "stream": True}):
        r = await client.post(
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", headers=KEY, json=bad
        )
        assert r.status_code == 400, bad
    counters = (await client.get("/_emulator/deployments/gpt-4o")).json()["counters"]
    assert counters["tokens_billed"]["chat_output"] == 2 * usage["completion_tokens"]
