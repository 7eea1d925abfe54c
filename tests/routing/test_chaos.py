"""A bounded chaos run in virtual time: random fault scripts (5xx, 429 storms, outages, refused
connections, hangs, dropped bodies) over three deployments while clients send and sometimes give
up mid-request. Invariants: every failure a caller sees is from imagegate's tree, nothing waits
past its deadline, no quota slot or probe slot leaks, no one is left queued, and once the faults
stop, no deployment stays held out."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest

from imagegate import AsyncImageGate, ImageGateError
from imagegate.config_load import load
from imagegate.emulator import DeploymentSpec, EmulatorConfig, create_emulator_app

pytestmark = pytest.mark.looptime

ENDPOINT = "http://emulator"
NAMES = ("east", "west", "swc")
CONFIG = (
    "deployments:\n"
    + "".join(
        f"  - {{name: {n}, endpoint: {ENDPOINT}, model: gpt-image-1, api_key: emulator-key, region: {n},"
        " rpm: 60, rpm_window_s: 10, concurrency: 4}\n"
        for n in NAMES
    )
    + "models:\n  default: [east, west, swc]\nretry: {deadline_s: 120, max_attempts: 3}\n"
)
# hang delays stay under the 120 s deadline: ASGITransport has no timeouts to cut them short
FAULTS: list[list[dict[str, object]]] = [
    [],
    [{"kind": "status", "status": 500, "probability": 0.5}],
    [{"kind": "status", "status": 429, "retry_after_s": 3, "probability": 0.7}],
    [{"kind": "outage", "mode": "503"}],
    [{"kind": "outage", "mode": "refuse"}],
    [{"kind": "hang", "phase": "before", "delay_s": 60, "probability": 0.3}],
    [{"kind": "drop_mid_body", "probability": 0.5}],
]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chaos_invariants(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    specs = tuple(
        DeploymentSpec(name=n, model="gpt-image-1", rpm=60, window_s=10, concurrency=4, image_bytes="small")
        for n in NAMES
    )
    app = create_emulator_app(
        EmulatorConfig(deployments=specs, seed=seed), clock=loop.time, sleep=asyncio.sleep
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)
    path = tmp_path / "imagegate.yaml"
    path.write_text(CONFIG)
    cfg = load(path, {}, today=dt.date(2026, 11, 24))
    gate = AsyncImageGate(cfg, http_client=http, sleep=asyncio.sleep, clock=loop.time, rand=rng.random)
    outcomes: Counter[str] = Counter()
    chaos_until = loop.time() + 240

    async def chaos() -> None:
        while loop.time() < chaos_until:
            for name in NAMES:
                script = rng.choice(FAULTS)
                put = await http.put(f"/_emulator/deployments/{name}/faults", json=script)
                assert put.status_code == 200, put.text
            await asyncio.sleep(rng.uniform(10, 40))
        for name in NAMES:
            await http.put(f"/_emulator/deployments/{name}/faults", json=[])

    async def client(i: int) -> None:
        crng = random.Random(seed * 1000 + i)
        while loop.time() < chaos_until + 60:
            began = loop.time()
            patience = crng.choice([5.0, 30.0, 1000.0])  # some callers give up early
            try:
                await asyncio.wait_for(gate.generate("a red fox", quality="low"), patience)
                outcomes["ok"] += 1
            except TimeoutError:
                outcomes["caller gave up"] += 1
            except ImageGateError as exc:
                outcomes[exc.code] += 1
                await asyncio.sleep(max(0.1, getattr(exc, "retry_after_s", None) or 1.0))
            # the gateway's own deadline (120 s) bounds every request, whatever the faults
            assert loop.time() - began <= 120 + 61, "a request outlived its deadline"

    async with gate:
        await asyncio.gather(chaos(), *(client(i) for i in range(12)))
        # Faults are gone: after the longest backed-off cool-down, and some traffic, no deployment
        # is held out any more (closed, or half-open waiting for its first request to be the probe).
        await asyncio.sleep(300)
        for _ in range(5):
            await gate.generate("a calm sea", quality="low")
        views = await gate.scheduler.snapshot()
    await http.aclose()
    assert outcomes["ok"] > 50, outcomes
    assert all(v.breaker in ("closed", "half_open") and v.breaker_until is None for v in views), views
    assert any(v.breaker == "closed" for v in views)
    assert {v.name: v.in_flight for v in views} == dict.fromkeys(NAMES, 0), "a quota slot leaked"
    assert gate.scheduler.queued() == 0
