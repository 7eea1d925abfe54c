"""Scripted faults in process: status storms, outages, hangs, broken bodies, modifiers; count,
probability and time windows on the fake clock; billing of each; the admin API that swaps them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from emulator.support import KEY, AppFactory, FakeClock, RecordingSleep, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig, FaultSpec

BODY = {"prompt": "fault", "quality": "low"}


def config(*faults: FaultSpec, **kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        deployments=(
            DeploymentSpec(name="d", model="gpt-image-1", image_bytes="small", faults=faults, **kw),
        ),
        seed=7,
    )


async def counters(c: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await c.get("/_emulator/deployments/d")).json()["counters"]
    return result


def client_for(make_app: AppFactory, cfg: EmulatorConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e")


async def test_status_storm_for_the_next_n_requests(make_app: AppFactory) -> None:
    async with client_for(make_app, config(FaultSpec(kind="status", status=503, count=2))) as c:
        statuses = [(await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code for _ in range(3)]
        assert statuses == [503, 503, 200]
        r = await c.get("/_emulator/deployments/d")
        assert r.json()["faults"][0]["fired"] == 2
        stats = await counters(c)
        assert stats["images_billed"] == 1 and stats["requests"]["by_outcome"]["fault_status"] == 2


async def test_server_error_body(make_app: AppFactory) -> None:
    async with client_for(make_app, config(FaultSpec(kind="status", status=500))) as c:
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
    error = r.json()["error"]
    assert (r.status_code, error["type"], error["code"], error["param"]) == (
        500,
        "server_error",
        "server_error",
        None,
    )
    assert r.headers["apim-request-id"] in error["message"]


async def test_scripted_429_with_and_without_retry_after(make_app: AppFactory) -> None:
    cfg = config(FaultSpec(kind="status", status=429, retry_after_s=5, count=1))
    async with client_for(make_app, cfg) as c:
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert (
            r.status_code == 429 and r.headers["retry-after"] == "5" and r.headers["retry-after-ms"] == "5000"
        )
    cfg = config(FaultSpec(kind="status", status=429, count=1), FaultSpec(kind="retry_after_missing"))
    async with client_for(make_app, cfg) as c:
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert r.status_code == 429
        assert "retry-after" not in r.headers and "retry-after-ms" not in r.headers


async def test_quota_429_without_retry_after(make_app: AppFactory) -> None:
    cfg = config(FaultSpec(kind="retry_after_missing"), rpm=6, window_s=10)
    async with client_for(make_app, cfg) as c:
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert r.status_code == 429 and "retry-after" not in r.headers


async def test_outage_window_on_the_fake_clock(make_app: AppFactory, clock: FakeClock) -> None:
    cfg = config(FaultSpec(kind="outage", mode="503", start_s=10, duration_s=5))
    async with client_for(make_app, cfg) as c:
        seen = []
        for _ in range(4):
            seen.append((await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code)
            clock.advance(5)
        assert seen == [200, 200, 503, 200]


async def test_refused_connection_in_process(make_app: AppFactory) -> None:
    async with client_for(make_app, config(FaultSpec(kind="outage", mode="refuse", count=1))) as c:
        with pytest.raises(httpx.ConnectError):
            await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200
        stats = await counters(c)
        assert stats["requests"]["by_status"] == {"200": 1, "none": 1}
        assert stats["images_billed"] == 1


async def test_drop_mid_body_in_process_is_billed(make_app: AppFactory) -> None:
    async with client_for(make_app, config(FaultSpec(kind="drop_mid_body", count=1))) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert (await counters(c))["images_billed"] == 1


async def test_malformed_json_and_usage_missing(make_app: AppFactory) -> None:
    cfg = config(FaultSpec(kind="malformed_json", count=1), FaultSpec(kind="usage_missing", start_s=0))
    async with client_for(make_app, cfg) as c:
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert r.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
        assert r.status_code == 200 and "usage" not in r.json()
        stats = await counters(c)
        assert stats["images_billed"] == 2
        assert stats["tokens_billed"]["image_output"] == 2 * 272  # billed even when usage is not shown


async def test_slow_body_trickles_through_the_injected_sleep(
    make_app: AppFactory, sleeper: RecordingSleep
) -> None:
    async with client_for(make_app, config(FaultSpec(kind="slow_body", delay_s=8))) as c:
        r = await c.post(gen_url("d"), headers=KEY, json=BODY)
    assert r.status_code == 200 and r.json()["data"]
    assert sum(sleeper.calls) == pytest.approx(8)


async def test_hang_waits_and_the_caller_bounds_it(make_app: AppFactory) -> None:
    app = make_app(config(FaultSpec(kind="hang", delay_s=3600, count=1)), sleep=_never)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await c.post(gen_url("d"), headers=KEY, json=BODY)
        stats = await counters(c)
    assert stats["images_billed"] == 1 and stats["requests"]["by_status"] == {"none": 1}
    assert stats["requests"]["by_outcome"] == {"fault_hang": 1}


async def _never(seconds: float) -> None:
    await asyncio.Event().wait()


async def test_probability_is_seeded_and_repeatable(make_app: AppFactory) -> None:
    runs = []
    for _ in range(2):
        async with client_for(make_app, config(FaultSpec(kind="status", status=500, probability=0.5))) as c:
            runs.append([(await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert 3 <= runs[0].count(500) <= 17


async def test_route_filter(make_app: AppFactory) -> None:
    async with client_for(make_app, config(FaultSpec(kind="status", status=500, routes=("edits",)))) as c:
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200


async def test_admin_replaces_the_script_and_lists_every_problem(make_app: AppFactory) -> None:
    async with client_for(make_app, config()) as c:
        ok = await c.put(
            "/_emulator/deployments/d/faults", json={"faults": [{"kind": "status", "status": 502}]}
        )
        assert ok.status_code == 200 and ok.json()["faults"][0]["status"] == 502
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 502
        bad = await c.put(
            "/_emulator/deployments/d/faults",
            json=[{"kind": "explode"}, {"kind": "status", "probability": 2}, {"kind": "hang", "delay_s": -1}],
        )
        assert bad.status_code == 400
        problems = bad.json()["error"]["problems"]
        assert len(problems) == 3
        assert any("faults[0].kind" in p and "'explode'" in p for p in problems)
        assert any("faults[1].probability" in p for p in problems)
        assert any("faults[2].delay_s" in p for p in problems)
        assert (await c.put("/_emulator/deployments/d/faults", content=b"{")).status_code == 400
        assert (await c.put("/_emulator/deployments/ghost/faults", json=[])).status_code == 404
        assert (await c.put("/_emulator/deployments/d/faults", json=[])).status_code == 200
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200


async def test_reset_clears_counters_and_windows(make_app: AppFactory) -> None:
    async with client_for(make_app, config(rpm=6, window_s=10)) as c:
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 429
        assert (await c.post("/_emulator/reset")).json() == {"reset": True}
        assert (await counters(c))["requests"]["total"] == 0
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).status_code == 200
        listing = (await c.get("/_emulator/deployments")).json()
        assert [d["name"] for d in listing["deployments"]] == ["d"]
        assert listing["deployments"][0]["api_keys"] == "<1 key(s)>"  # keys never shown
        assert (await c.get("/_emulator/deployments/ghost")).status_code == 404


@pytest.mark.parametrize(
    ("partials", "events"), [(2, ["image_generation.partial_image", "error"]), (0, ["error"])]
)
async def test_stream_error_event_ends_the_stream_unbilled(
    make_app: AppFactory, partials: int, events: list[str]
) -> None:
    async with client_for(make_app, config(FaultSpec(kind="stream_error", count=1))) as c:
        body = {**BODY, "stream": True, "partial_images": partials}
        r = await c.post(gen_url("d"), headers=KEY, json=body)
        assert r.status_code == 200
        assert [line[7:] for line in r.text.splitlines() if line.startswith("event: ")] == events
        error = orjson.loads(r.text.rsplit("data: ", 1)[1])
        assert error["error"]["code"] == "server_error"
        stats = await counters(c)
        assert stats["images_billed"] == 0
        # a plain (non-streamed) request is untouched by a stream_error rule
        again = config(FaultSpec(kind="stream_error"))
    async with client_for(make_app, again) as c:
        assert (await c.post(gen_url("d"), headers=KEY, json=BODY)).json()["data"]
