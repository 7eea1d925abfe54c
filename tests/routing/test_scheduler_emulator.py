"""The scheduler against the in-process Azure emulator, in virtual time (looptime): the quota is
respected (no 429s when it is configured correctly), outages fail over, a 429 with retry-after
opens the breaker for that long."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import httpx
import pytest

from imagegate.config import ApiKeyAuth, DeploymentConfig, Secret
from imagegate.emulator.app import create_emulator_app
from imagegate.emulator.config import DeploymentSpec, EmulatorConfig, FaultSpec
from imagegate.policy.breaker import BreakerConfig
from imagegate.policy.routing import RoutePolicy
from imagegate.routing import AttemptResult, Scheduler

pytestmark = pytest.mark.looptime

VERSION = "2025-04-01-preview"
BODY = {"prompt": "a red fox in the snow", "size": "1024x1024", "quality": "low"}


def spec(name: str, *, rpm: int, concurrency: int = 4, faults: tuple[FaultSpec, ...] = ()) -> DeploymentSpec:
    return DeploymentSpec(
        name=name,
        model="gpt-image-1",
        rpm=rpm,
        window_s=10,
        concurrency=concurrency,
        image_bytes="small",
        faults=faults,
    )


def dep(name: str, *, rpm: int, concurrency: int = 4, priority: int = 0) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        endpoint="http://emulator",
        model="gpt-image-1",
        auth=ApiKeyAuth(key=Secret("emulator-key")),
        rpm=rpm,
        concurrency=concurrency,
        priority=priority,
        rpm_window_s=10,
    )


class Harness:
    """A scheduler, an emulator, and a small attempt loop (core's upstream client does this for real)."""

    def __init__(
        self, specs: Sequence[DeploymentSpec], deps: Sequence[DeploymentConfig], **kw: object
    ) -> None:
        loop = asyncio.get_running_loop()
        app = create_emulator_app(
            EmulatorConfig(deployments=tuple(specs)), clock=loop.time, sleep=asyncio.sleep
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")
        self.deps = list(deps)
        self.scheduler = Scheduler(deps, clock=loop.time, sleep=asyncio.sleep, rand=lambda: 0.0, **kw)  # type: ignore[arg-type]
        self.statuses: list[tuple[str, int | None]] = []

    async def attempt(self, name: str) -> tuple[int | None, float | None, int | None]:
        try:
            r = await self.http.post(
                f"/openai/deployments/{name}/images/generations",
                params={"api-version": VERSION},
                headers={"api-key": "emulator-key"},
                json=BODY,
            )
        except httpx.TransportError:
            self.statuses.append((name, None))
            return None, None, None
        self.statuses.append((name, r.status_code))
        ra = r.headers.get("retry-after")
        remaining = r.headers.get("x-ratelimit-remaining-requests")
        return r.status_code, float(ra) if ra else None, int(remaining) if remaining else None

    async def send(self, *, attempts: int = 3, deadline_s: float = 600.0) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        tried: set[str] = set()
        for _ in range(attempts):
            plan = await self.scheduler.plan(
                "default", [d for d in self.deps if d.name not in tried] or self.deps
            )
            lease = await self.scheduler.acquire("default", plan.names, deadline=deadline)
            status, ra, remaining = await self.attempt(lease.deployment)
            await self.scheduler.finish(
                lease, AttemptResult(status=status, retry_after_s=ra, remaining_requests=remaining)
            )
            if status == 200:
                return lease.deployment
            tried.add(lease.deployment)
        raise AssertionError(f"attempts exhausted: {self.statuses[-attempts:]}")


async def test_correct_quota_means_no_429s_and_full_use_of_it() -> None:
    h = Harness(
        [spec("east", rpm=60), spec("west", rpm=30)],
        [dep("east", rpm=60), dep("west", rpm=30)],
        default_policy=RoutePolicy(strategy="most_headroom"),
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    served = await asyncio.gather(*(h.send() for _ in range(60)))
    elapsed = loop.time() - start
    codes = [c for _, c in h.statuses]
    assert codes.count(429) == 0
    assert codes == [200] * 60
    # 15 per 10 s window across both (10 east, 5 west), bounded further by 4 concurrent per
    # deployment and the emulated latency (~4.4 s): neither exceeds its share of the windows used,
    # and no window is wasted waiting a full window after the last grant (that took 53 s).
    windows = math.ceil(elapsed / 10)
    assert served.count("east") <= 10 * windows and served.count("west") <= 5 * windows
    assert served.count("east") > served.count("west") > 0
    assert elapsed < 50


async def test_misconfigured_quota_is_learnt_from_headers_without_429s() -> None:
    # We believe 60 RPM; Azure grants 30. x-ratelimit-remaining-requests on the first responses
    # already says so, and the effective rate drops before Azure has to refuse anything.
    h = Harness([spec("east", rpm=30)], [dep("east", rpm=60)])
    served = await asyncio.gather(*(h.send(attempts=5) for _ in range(40)))
    assert served == ["east"] * 40
    codes = [c for _, c in h.statuses]
    assert codes == [200] * 40
    (view,) = await h.scheduler.snapshot()
    assert view.configured_rpm == 60 and view.effective_rpm is not None and view.effective_rpm < 60


async def test_outage_fails_over_within_three_attempts() -> None:
    outage = (FaultSpec(kind="outage", mode="503"),)
    h = Harness(
        [spec("primary", rpm=600, faults=outage), spec("secondary", rpm=600)],
        [dep("primary", rpm=600, priority=0), dep("secondary", rpm=600, priority=1)],
        breaker_config=BreakerConfig(min_requests=3, cooldown_s=60),
    )
    served = [await h.send() for _ in range(10)]
    assert served == ["secondary"] * 10
    assert [c for n, c in h.statuses if n == "primary"] == [503, 503, 503]


async def test_connection_refused_counts_as_outage() -> None:
    outage = (FaultSpec(kind="outage", mode="refuse"),)
    h = Harness(
        [spec("primary", rpm=600, faults=outage), spec("secondary", rpm=600)],
        [dep("primary", rpm=600, priority=0), dep("secondary", rpm=600, priority=1)],
        breaker_config=BreakerConfig(min_requests=3, cooldown_s=60),
    )
    served = [await h.send() for _ in range(6)]
    assert served == ["secondary"] * 6
    assert [c for n, c in h.statuses if n == "primary"] == [None, None, None]


async def test_429_with_retry_after_opens_the_breaker_for_that_long() -> None:
    storm = (FaultSpec(kind="status", status=429, retry_after_s=20, count=1),)
    h = Harness(
        [spec("a", rpm=600, faults=storm), spec("b", rpm=600)],
        [dep("a", rpm=600, priority=0), dep("b", rpm=600, priority=1)],
        breaker_config=BreakerConfig(cooldown_s=5),
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await h.send() == "b"
    views = {v.name: v for v in await h.scheduler.snapshot()}
    assert views["a"].breaker == "open" and views["a"].breaker_until == pytest.approx(t0 + 20)
    await asyncio.sleep(12)
    assert await h.send() == "b"  # still inside the retry-after, past the 5 s cool-down
    await asyncio.sleep(20)
    assert await h.send() == "a"  # half-open probe succeeded
    assert [n for n, _ in h.statuses].count("a") == 2
