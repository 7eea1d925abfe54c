"""Routing under saturation, in virtual time: goodput against the aggregate Azure quota, upstream
429s per attempt, client errors, and how fast an outage is detected, with and without the
scheduler (the baseline is the same attempt loop walking the plan in configured order, retrying
429s after their retry-after, as a plain client does), all measured in this run.

The whole request path (validation, routing, attempt loop, pricing) runs against the in-process
emulator on a looptime event loop, so ten simulated minutes take seconds and the figures are
deterministic for a seed. Targets (issue 4): goodput ≥ 95 % of the aggregate quota with zero
client errors; upstream 429s ≤ 1 % of attempts; outage detected within 2 s or 3 attempts.

    .venv/bin/python bench/bench_routing.py [--minutes 10] [--clients 40]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import looptime

from imagegate.catalog import default_catalog
from imagegate.config import ImageGateConfig
from imagegate.config_load import load
from imagegate.emulator import DeploymentSpec, EmulatorConfig, create_emulator_app
from imagegate.errors import ImageGateError
from imagegate.pipeline.build import PipelineDeps, build_pipeline
from imagegate.pipeline.context import RequestContext
from imagegate.routing import Scheduler
from imagegate.types import ImageRequest
from imagegate.upstream.client import UpstreamClient

ENDPOINT = "http://emulator"
# (name, rpm, window_s, concurrency): what Azure grants, and what the gateway is told.
DEPLOYMENTS = [("east", 60, 10, 16), ("west", 30, 10, 16), ("swc", 120, 1, 16)]
CONFIG = (
    "deployments:\n"
    + "".join(
        f"  - {{name: {n}, endpoint: {ENDPOINT}, model: gpt-image-1, api_key: emulator-key, region: {n},"
        f" rpm: {rpm}, rpm_window_s: {w}, concurrency: {c}}}\n"
        for n, rpm, w, c in DEPLOYMENTS
    )
    + "models:\n  default: [east, west, swc]\n"
)


def granted_rpm() -> float:
    """The aggregate quota as Azure judges it: floor(rpm/60 · window) per window, per deployment."""
    return sum(max(1, int(rpm * w / 60)) * 60 / w for _, rpm, w, _ in DEPLOYMENTS)


@dataclass
class Run:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    upstream_429: int = 0
    detect_s: float | None = None
    detect_attempts: int | None = None


def build_config() -> ImageGateConfig:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imagegate.yaml"
        path.write_text(CONFIG)
        return load(path, {}, today=dt.date(2026, 11, 24))


async def scenario(
    cfg: ImageGateConfig, *, routed: bool, minutes: float, clients: int, outage_at: float | None
) -> Run:
    loop = asyncio.get_running_loop()
    specs = tuple(
        DeploymentSpec(name=n, model="gpt-image-1", region="eastus2", rpm=rpm, window_s=w, concurrency=c,
                       image_bytes="small")
        for n, rpm, w, c in DEPLOYMENTS
    )  # fmt: skip
    app = create_emulator_app(EmulatorConfig(deployments=specs, seed=7), clock=loop.time, sleep=asyncio.sleep)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)
    catalog = default_catalog()
    upstream = UpstreamClient(http, catalog=catalog, retry=cfg.retry, sleep=asyncio.sleep, clock=loop.time)
    scheduler = Scheduler.from_config(cfg, clock=loop.time, sleep=asyncio.sleep) if routed else None
    pipeline = build_pipeline(PipelineDeps(cfg, catalog, upstream, scheduler=scheduler, clock=loop.time))
    run = Run()
    start = loop.time()
    end = start + minutes * 60

    async def client() -> None:
        while loop.time() < end:
            ctx = RequestContext(request=ImageRequest(prompt="a red fox in the snow", quality="low"))
            try:
                result = await pipeline(ctx)
            except ImageGateError as exc:
                run.errors[exc.code] += 1
                run.attempts += len(exc.attempts)
                run.upstream_429 += sum(1 for a in exc.attempts if a.status_code == 429)
                # a well-behaved caller: wait what it was told (or 1 s), then try again
                await asyncio.sleep(getattr(exc, "retry_after_s", None) or 1.0)
                continue
            if loop.time() <= end:
                run.ok += 1
            run.attempts += len(result.attempts)
            run.upstream_429 += sum(1 for a in result.attempts if a.status_code == 429)

    async def outage() -> None:
        assert outage_at is not None
        await asyncio.sleep(outage_at)
        t0 = loop.time()
        await http.put("/_emulator/deployments/swc/faults", json=[{"kind": "outage", "mode": "503"}])
        while scheduler is not None:
            views = {v.name: v for v in await scheduler.snapshot()}
            if views["swc"].breaker != "closed":
                run.detect_s = loop.time() - t0
                counters: dict[str, Any] = (await http.get("/_emulator/deployments/swc")).json()["counters"]
                run.detect_attempts = int(counters["requests"]["by_status"].get("503", 0))
                return
            await asyncio.sleep(0.01)

    tasks = [client() for _ in range(clients)]
    if outage_at is not None:
        tasks.append(outage())
    await asyncio.gather(*tasks)
    await http.aclose()
    return run


def report(name: str, run: Run, minutes: float, quota_rpm: float) -> None:
    goodput = run.ok / minutes
    rate = run.upstream_429 / run.attempts if run.attempts else 0.0
    errors = sum(run.errors.values())
    print(
        f"{name:<34} goodput {goodput:6.1f} img/min = {goodput / quota_rpm:6.1%} of quota | "
        f"client errors {errors:4d} {dict(run.errors) or ''} | upstream 429s {run.upstream_429:4d} "
        f"/ {run.attempts:5d} attempts = {rate:6.2%}"
    )


async def main(cfg: ImageGateConfig, minutes: float, clients: int) -> None:
    quota_rpm = granted_rpm()
    print(f"aggregate quota as Azure grants it: {quota_rpm:g} RPM over {len(DEPLOYMENTS)} deployments; "
          f"{clients} closed-loop clients for {minutes:g} simulated minutes")  # fmt: skip
    base = await scenario(cfg, routed=False, minutes=minutes, clients=clients, outage_at=None)
    routed = await scenario(cfg, routed=True, minutes=minutes, clients=clients, outage_at=None)
    report("baseline (configured order, no gate)", base, minutes, quota_rpm)
    report("routed (scheduler)", routed, minutes, quota_rpm)
    if base.ok:
        print(
            f"routed / baseline: goodput {routed.ok / base.ok:.2f}x, "
            f"upstream attempts {routed.attempts / max(1, base.attempts):.3f}x"
        )
    outage_at = min(120.0, minutes * 60 / 5)
    out = await scenario(cfg, routed=True, minutes=minutes, clients=clients, outage_at=outage_at)
    # during the outage only east + west remain
    left = quota_rpm - next(max(1, int(r * w / 60)) * 60 / w for n, r, w, _ in DEPLOYMENTS if n == "swc")
    available = (outage_at / 60 * quota_rpm + (minutes - outage_at / 60) * left) / minutes
    report(f"routed, swc outage from t={outage_at:g} s", out, minutes, available)
    print(f"  (goodput there is against the {available:.1f} RPM still available on average)")
    print(f"outage detected after {out.detect_s:.2f} s and {out.detect_attempts} failed attempt(s) to swc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=40)
    args = parser.parse_args()
    config = build_config()
    loop = looptime.new_event_loop()
    try:
        loop.run_until_complete(main(config, args.minutes, args.clients))
    finally:
        loop.close()
