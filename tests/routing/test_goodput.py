"""A scaled-down ``bench/bench_goodput.py`` as a CI guard, in virtual time (looptime): through the
library face, against the in-process emulator with the same quotas configured on both sides,
offered load twice the aggregate capacity yields zero client errors and zero upstream 429s for
requests whose deadline allows the wait, and uses every deployment. No timing assertions beyond
what the quota implies (virtual time is exact).

Also: a request is not admitted once its deadline leaves less time than the upstream is known
to take (it would be cut off after being sent, billed and undelivered)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from imagegate import AsyncImageGate, RateLimited
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import EmulatorConfig

pytestmark = pytest.mark.looptime

ENDPOINT = "http://emulator.imagegate.invalid"
# (name, rpm, concurrency): 10 + 10 + 5 requests per 10 s window
DEPLOYMENTS = (("east", 60, 4), ("west", 60, 4), ("north", 30, 2))


def setup(
    tmp_path: Path, *, deadline_s: float, median_s: float = 2.0, concurrency: int | None = None
) -> tuple[AsyncImageGate, httpx.AsyncClient]:
    """The emulator and the gateway with the same quotas (``concurrency`` overrides all)."""
    loop = asyncio.get_running_loop()
    deployments = [(name, rpm, concurrency or conc) for name, rpm, conc in DEPLOYMENTS]
    emulator = EmulatorConfig.model_validate(
        {
            "time_scale": 1.0,
            "deployments": [
                {
                    "name": name,
                    "model": "gpt-image-1-mini",
                    "rpm": rpm,
                    "window_s": 10,
                    "concurrency": conc,
                    "image_bytes": "small",
                    "latency": {"median_s": median_s, "p95_s": median_s * 1.6},
                }
                for name, rpm, conc in deployments
            ],
        }
    )
    app = create_emulator_app(emulator, clock=loop.time, sleep=asyncio.sleep)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)
    raw: dict[str, Any] = {
        "deployments": [
            {
                "name": name,
                "endpoint": ENDPOINT,
                "model": "gpt-image-1-mini",
                "api_key": "emulator-key",
                "rpm": rpm,
                "rpm_window_s": 10,
                "concurrency": conc,
            }
            for name, rpm, conc in deployments
        ],
        "models": {"default": [name for name, _, _ in DEPLOYMENTS]},
        "retry": {"deadline_s": deadline_s},
    }
    path = tmp_path / "imagegate.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load(path, {}, today=dt.date(2026, 11, 24))
    gate = AsyncImageGate(cfg, http_client=http, sleep=asyncio.sleep, clock=loop.time, rand=lambda: 0.5)
    return gate, http


async def emulator_statuses(http: httpx.AsyncClient) -> Counter[str]:
    body = (await http.get("/_emulator/deployments")).json()
    total: Counter[str] = Counter()
    for d in body["deployments"]:
        total.update(d["counters"]["requests"]["by_status"])
    return total


async def test_twice_the_capacity_is_served_without_429s_or_client_errors(tmp_path: Path) -> None:
    # 25 requests per 10 s of capacity; offer 5/s (twice that) for 20 s: 100 requests, all of
    # which can be served within their 120 s deadline by waiting.
    gate, http = setup(tmp_path, deadline_s=120.0)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> str:
        await asyncio.sleep(i * 0.2)
        result = await gate.generate("a lighthouse in a storm", quality="low")
        return result.deployment

    async with gate:
        served = await asyncio.gather(*(one(i) for i in range(100)), return_exceptions=True)
    elapsed = loop.time() - start
    errors = [s for s in served if isinstance(s, BaseException)]
    assert errors == []
    statuses = await emulator_statuses(http)
    assert statuses == {"200": 100}  # no 429, no retry: every attempt was a success
    spread = Counter(served)
    assert set(spread) == {"east", "west", "north"}
    # 100 requests need four full windows of 25 (starts 0, 10, 20, 30): the quota was used
    # fully, not halved by a 429 or wasted by over-long blocks.
    assert elapsed < 50
    await http.aclose()


async def test_no_admission_once_the_deadline_leaves_less_than_the_upstream_takes(tmp_path: Path) -> None:
    # Deadline 5 s, latency ~2 s. Fill every window by t≈2 (25 requests, done by t≈5.6), then
    # ask once more: the next slot opens at t=10, before the deadline (t≈10.6), but the image
    # could not be back by then. Refused at once with 429 and an honest retry-after; nothing is
    # sent for it (sent, its read timeout would cut it off: billed and undelivered).
    gate, http = setup(tmp_path, deadline_s=5.0, concurrency=10)  # only the windows bind
    loop = asyncio.get_running_loop()
    async with gate:
        await gate.generate("warm", quality="low")  # the gateway learns the latency
        await asyncio.gather(*(gate.generate("fill", quality="low") for _ in range(24)))
        asked_at = loop.time()
        with pytest.raises(RateLimited) as refused:
            await gate.generate("late", quality="low")
        assert refused.value.attempts == ()
        assert loop.time() == pytest.approx(asked_at)  # at once, not at the deadline
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
    assert await emulator_statuses(http) == {"200": 25}
    await http.aclose()
