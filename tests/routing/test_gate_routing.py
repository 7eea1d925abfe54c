"""The library face with routing wired in, against the in-process emulator in virtual time: a
burst of requests is paced to the quota (no 429s), spread over the group's deployments, and a
deployment in outage is skipped by the breaker after a few attempts."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from typing import Any

import httpx
import pytest

from imagegate import AsyncImageGate, NoDeploymentAvailable, UpstreamStatusError
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app

pytestmark = pytest.mark.looptime

ENDPOINT = "http://emulator.imagegate.invalid"


def gate_and_http() -> tuple[AsyncImageGate, httpx.AsyncClient]:
    loop = asyncio.get_running_loop()
    app = create_emulator_app(clock=loop.time, sleep=asyncio.sleep)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)
    cfg = load(None, {}, today=dt.date(2026, 11, 24))
    gate = AsyncImageGate(cfg, http_client=http, sleep=asyncio.sleep, clock=loop.time, rand=lambda: 0.5)
    return gate, http


async def statuses(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    counters = (await http.get(f"/_emulator/deployments/{name}")).json()["counters"]
    return dict(counters["requests"]["by_status"])


async def test_burst_is_paced_to_the_quota_without_429s() -> None:
    gate, http = gate_and_http()
    async with gate:
        results = await asyncio.gather(*(gate.generate("a red fox", quality="low") for _ in range(40)))
        spread = Counter(r.deployment for r in results)
        # priority order, spilling over to the second deployment whenever the first is saturated
        assert set(spread) == {"gpt-image-1", "gpt-image-1-swc"} and min(spread.values()) >= 15
        assert all(len(r.attempts) == 1 for r in results)
        for name in spread:
            assert "429" not in await statuses(http, name)
    await http.aclose()


async def test_outage_is_detected_and_skipped() -> None:
    gate, http = gate_and_http()
    async with gate:
        put = await http.put(
            "/_emulator/deployments/gpt-image-1/faults", json=[{"kind": "outage", "mode": "503"}]
        )
        assert put.status_code == 200
        results = [await gate.generate("a red fox", quality="low") for _ in range(12)]
        assert {r.deployment for r in results} == {"gpt-image-1-swc"}
        hits = [i for i, r in enumerate(results) if r.attempts[0].deployment == "gpt-image-1"]
        # three failures in a row trip the breaker; afterwards only single half-open probes
        assert hits[:3] == [0, 1, 2]
        # then probes, each after a cool-down that doubles: 5, 10, 20 s ... (requests take ~4 s)
        assert all(b - a >= 2 for a, b in itertools.pairwise(hits[3:]))
        assert (await statuses(http, "gpt-image-1")).get("503", 0) == len(hits) < 12
        (view,) = [v for v in await gate.scheduler.snapshot() if v.name == "gpt-image-1"]
        assert view.breaker == "open"
        put = await http.put(
            "/_emulator/deployments/gpt-image-1-swc/faults", json=[{"kind": "outage", "mode": "503"}]
        )
        outcomes = []
        for _ in range(6):
            try:
                await gate.generate("a red fox", quality="low")
            except UpstreamStatusError as exc:
                outcomes.append(exc.status_code)
            except NoDeploymentAvailable as exc:
                assert "gpt-image-1-swc: breaker open" in exc.message
                assert exc.retry_after_s is not None and exc.retry_after_s > 0
                break
        else:
            raise AssertionError("the last deployment's breaker never opened")
        # a request or two spend their attempts on the last deployment, then it is tripped
        assert set(outcomes) <= {503} and len(outcomes) <= 2
    await http.aclose()
