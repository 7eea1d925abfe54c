"""Scheduler in virtual time (looptime): quota pacing with zero 429s, fair waiting, honest
retry-after, failover on outage, breaker on 429 + retry-after, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from imagegate.config import ApiKeyAuth, DeploymentConfig, Secret
from imagegate.errors import NoDeploymentAvailable, RateLimited
from imagegate.policy.breaker import BreakerConfig
from imagegate.policy.routing import RoutePolicy
from imagegate.routing import AttemptResult, Scheduler

pytestmark = pytest.mark.looptime


def dep(
    name: str,
    *,
    rpm: int | None = 60,
    concurrency: int | None = None,
    priority: int = 0,
    region: str = "eastus2",
    window: float = 10.0,
) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        endpoint="http://azure.invalid",
        model="gpt-image-1",
        region=region,
        auth=ApiKeyAuth(key=Secret("k")),
        rpm=rpm,
        concurrency=concurrency,
        priority=priority,
        rpm_window_s=window,
    )


@dataclass
class FakeAzure:
    """Azure's quota as the emulator models it: fixed windows, rpm/60·window per window, plus
    concurrency; scripted outages. Answers (status, retry_after, remaining)."""

    rpm: dict[str, int]
    window_s: float = 10.0
    concurrency: dict[str, int] = field(default_factory=dict)
    latency_s: float = 5.0
    down: set[str] = field(default_factory=set)
    throttle_once: dict[str, float] = field(default_factory=dict)
    used: dict[tuple[str, int], int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    log: list[tuple[float, str, int]] = field(default_factory=list)

    async def call(self, name: str) -> tuple[int, float | None, int | None]:
        now = asyncio.get_running_loop().time()
        if name in self.down:
            self.log.append((now, name, 500))
            return 500, None, None
        if name in self.throttle_once:
            self.log.append((now, name, 429))
            return 429, self.throttle_once.pop(name), 0
        key = (name, math.floor(now / self.window_s))
        per_window = max(1, math.floor(self.rpm[name] * self.window_s / 60))
        if self.used.get(key, 0) >= per_window or self.in_flight.get(name, 0) >= self.concurrency.get(
            name, 99
        ):
            self.log.append((now, name, 429))
            return 429, 1.0, 0
        self.used[key] = self.used.get(key, 0) + 1
        remaining = per_window - self.used[key]  # as Azure reports it: at admission
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight[name] -= 1
        self.log.append((now, name, 200))
        return 200, None, remaining


async def send(
    s: Scheduler,
    azure: FakeAzure,
    deps: Sequence[DeploymentConfig],
    *,
    deadline_s: float = 600.0,
    group: str = "default",
    attempts: int = 3,
) -> str:
    """A minimal attempt loop (core's upstream client does this for real)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    tried: set[str] = set()
    for _ in range(attempts):
        plan = await s.plan(group, [d for d in deps if d.name not in tried] or deps)
        lease = await s.acquire(group, plan.names, deadline=deadline)
        status, retry_after, remaining = await azure.call(lease.deployment)
        await s.finish(
            lease, AttemptResult(status=status, retry_after_s=retry_after, remaining_requests=remaining)
        )
        if status == 200:
            return lease.deployment
        tried.add(lease.deployment)
    raise AssertionError("attempts exhausted")


def scheduler(deps: Sequence[DeploymentConfig], **kw: object) -> Scheduler:
    loop = asyncio.get_running_loop()
    return Scheduler(deps, clock=loop.time, sleep=asyncio.sleep, rand=lambda: 0.0, **kw)  # type: ignore[arg-type]


async def test_quota_is_respected_with_zero_429s_and_near_full_goodput() -> None:
    deps = [dep("a", rpm=60), dep("b", rpm=30, region="swedencentral")]
    azure = FakeAzure(rpm={"a": 60, "b": 30})
    s = scheduler(deps, default_policy=RoutePolicy(strategy="most_headroom"))
    start = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(send(s, azure, deps) for _ in range(90)))
    elapsed = asyncio.get_running_loop().time() - start
    assert [c for _, _, c in azure.log].count(429) == 0
    assert len(results) == 90 and set(results) == {"a", "b"}
    # 15 per 10 s window in aggregate: six full windows (t = 0 … 50) plus the last one's latency,
    # i.e. every slot of the quota was used.
    assert elapsed == pytest.approx(50 + azure.latency_s)


async def test_concurrency_limit_is_respected() -> None:
    deps = [dep("d2", rpm=None, concurrency=2)]
    azure = FakeAzure(rpm={"d2": 10_000}, concurrency={"d2": 2})
    s = scheduler(deps)
    await asyncio.gather(*(send(s, azure, deps) for _ in range(10)))
    assert [c for _, _, c in azure.log].count(429) == 0
    assert len(azure.log) == 10


async def test_waiters_are_served_in_arrival_order() -> None:
    deps = [dep("a", rpm=6)]  # one request per 10 s
    azure = FakeAzure(rpm={"a": 6}, latency_s=1.0)
    s = scheduler(deps)
    order: list[int] = []

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.001)  # arrive in order i
        await send(s, azure, deps)
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    starts = [t for t, _, _ in azure.log]
    assert all(b - a >= 10.0 - 1e-9 for a, b in itertools.pairwise(starts))


async def test_fails_fast_with_honest_retry_after_when_deadline_is_too_close() -> None:
    deps = [dep("a", rpm=6)]
    azure = FakeAzure(rpm={"a": 6}, latency_s=1.0)
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    await send(s, azure, deps)  # uses the window's only slot
    t0 = loop.time()
    with pytest.raises(RateLimited) as info:
        await send(s, azure, deps, deadline_s=3.0)
    assert loop.time() == t0  # failed at once, did not sit out the deadline
    assert info.value.retry_after_s == pytest.approx(9.0)  # the slot frees 10 s after the first send


async def test_waits_when_capacity_returns_before_the_deadline() -> None:
    deps = [dep("a", rpm=6)]
    azure = FakeAzure(rpm={"a": 6}, latency_s=1.0)
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    await send(s, azure, deps)
    t0 = loop.time()
    assert await send(s, azure, deps, deadline_s=30.0) == "a"
    assert loop.time() - t0 == pytest.approx(9.0 + 1.0)  # waited for the slot, then 1 s latency


async def test_failover_on_outage_and_breaker_excludes_the_broken_deployment() -> None:
    deps = [dep("primary", priority=0), dep("secondary", priority=1, region="swedencentral")]
    azure = FakeAzure(rpm={"primary": 600, "secondary": 600}, down={"primary"}, latency_s=0.5)
    s = scheduler(deps, breaker_config=BreakerConfig(min_requests=3, cooldown_s=30))
    served = [await send(s, azure, deps) for _ in range(10)]
    assert served == ["secondary"] * 10
    primary_hits = [t for t, n, _ in azure.log if n == "primary"]
    assert len(primary_hits) == 3  # outage detected within 3 attempts, then excluded
    plan = await s.plan("default", deps)
    assert plan.names == ("secondary",)
    assert plan.excluded[0].code == "breaker" and "3/3 failures" in plan.excluded[0].reason
    view = {v.name: v for v in await s.snapshot()}
    assert view["primary"].breaker == "open"


async def test_breaker_opens_on_429_with_retry_after_and_probes_after() -> None:
    deps = [dep("a", priority=0), dep("b", priority=1)]
    azure = FakeAzure(rpm={"a": 600, "b": 600}, throttle_once={"a": 20.0}, latency_s=0.5)
    s = scheduler(deps, breaker_config=BreakerConfig(cooldown_s=5))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await send(s, azure, deps) == "b"  # 429 on a, failed over to b
    assert [n for _, n, _ in azure.log] == ["a", "b"]
    # a stays out (no traffic) for the whole retry-after, not just the 5 s cool-down
    await asyncio.sleep(10)
    assert await send(s, azure, deps) == "b"
    await asyncio.sleep(t0 + 20.0 - loop.time())
    assert await send(s, azure, deps) == "a"  # the half-open probe succeeded
    assert [v.breaker for v in await s.snapshot() if v.name == "a"] == ["closed"]


async def test_every_deployment_broken_raises_no_deployment_available_at_once() -> None:
    deps = [dep("a"), dep("b")]
    azure = FakeAzure(rpm={"a": 600, "b": 600}, down={"a", "b"}, latency_s=0.1)
    s = scheduler(deps, breaker_config=BreakerConfig(min_requests=2, cooldown_s=30))
    for _ in range(2):
        with pytest.raises(AssertionError, match="attempts exhausted"):
            await send(s, azure, deps, attempts=2)
    with pytest.raises(NoDeploymentAvailable) as info:
        await s.acquire("default", ("a", "b"), deadline=asyncio.get_running_loop().time() + 600)
    assert info.value.retry_after_s is not None and 0 < info.value.retry_after_s <= 30


async def test_cancelled_attempt_releases_quota_and_probe_slot() -> None:
    deps = [dep("a", rpm=None, concurrency=1)]
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    lease = await s.acquire("default", ("a",), deadline=loop.time() + 1)
    with pytest.raises(RateLimited):
        await s.acquire("default", ("a",), deadline=loop.time() + 1)
    await s.finish(lease, AttemptResult(status=None, cancelled=True))
    again = await s.acquire("default", ("a",), deadline=loop.time() + 1)
    assert again.deployment == "a"


async def test_a_lease_abandoned_without_finish_is_reclaimed_after_its_expiry() -> None:
    """A replica that dies mid-request never calls ``finish``: its concurrency slot is reclaimed
    ``lease_grace_s`` (30 s) after the request's deadline, not held for ever; the dead holder's
    late ``finish`` (had it come) gives back nothing that the next holder holds."""
    deps = [dep("a", rpm=None, concurrency=1)]
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    lost = await s.acquire("default", ("a",), deadline=t0 + 1, request_deadline=t0 + 60)
    with pytest.raises(RateLimited):  # held: no finish, not expired
        await s.acquire("default", ("a",), deadline=t0 + 1, request_deadline=t0 + 60)
    assert [v.in_flight for v in await s.snapshot()] == [1]
    await asyncio.sleep(89)
    assert [v.in_flight for v in await s.snapshot()] == [1]  # healthy until deadline + grace
    await asyncio.sleep(1)
    assert [v.in_flight for v in await s.snapshot()] == [0]  # expired at t0 + 90
    second = await s.acquire("default", ("a",), deadline=loop.time() + 1, request_deadline=loop.time() + 60)
    assert second.deployment == "a" and second.lease_id != lost.lease_id
    await s.finish(lost, AttemptResult(status=200))  # too late: harmless
    assert [v.in_flight for v in await s.snapshot()] == [1]
    with pytest.raises(RateLimited):
        await s.acquire("default", ("a",), deadline=loop.time() + 1)
    await s.finish(second, AttemptResult(status=200))
    assert [v.in_flight for v in await s.snapshot()] == [0]


async def test_a_waiter_gets_the_slot_of_an_abandoned_lease_once_it_expires() -> None:
    deps = [dep("a", rpm=None, concurrency=1)]
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await s.acquire("default", ("a",), deadline=t0 + 1, request_deadline=t0 + 10)  # never finished
    got = await s.acquire("default", ("a",), deadline=t0 + 300, request_deadline=t0 + 400)
    assert got.deployment == "a" and t0 + 40 <= loop.time() <= t0 + 300


async def test_a_queued_request_is_woken_when_concurrency_frees() -> None:
    deps = [dep("a", rpm=None, concurrency=1)]
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    first = await s.acquire("default", ("a",), deadline=loop.time() + 100)
    waiter = asyncio.ensure_future(s.acquire("default", ("a",), deadline=loop.time() + 100))
    await asyncio.sleep(2)
    assert not waiter.done()
    await s.finish(first, AttemptResult(status=200))
    second = await asyncio.wait_for(waiter, 1)
    assert second.deployment == "a" and loop.time() == pytest.approx(2.0, abs=0.01)


async def test_empty_plan_is_no_deployment_available() -> None:
    s = scheduler([dep("a")])
    with pytest.raises(NoDeploymentAvailable):
        await s.acquire("default", (), deadline=1.0)


async def test_latency_p95_agrees_with_the_status_view_and_skips_the_unobserved() -> None:
    deps = [dep("a"), dep("b"), dep("c")]
    s = scheduler(deps)
    loop = asyncio.get_running_loop()
    for name, took, quality in (("a", 20.0, "low"), ("a", 30.0, "low"), ("b", 50.0, "high")):
        lease = await s.acquire("default", [name], deadline=loop.time() + 600)
        await asyncio.sleep(took)
        await s.finish(lease, AttemptResult(status=200, quality=quality))
    views = {v.name: v for v in await s.snapshot()}
    # a quality a deployment has seen, the any-quality estimate where it has not, none for c
    assert await s.latency_p95_s(["a", "b", "c"], "low") == [
        views["a"].latency_p95_s["low"],
        views["b"].latency_p95_s["*"],
    ]
    assert await s.latency_p95_s(["c", "unknown"], "low") == []
    assert views["a"].latency_p95_s["low"] > 0
