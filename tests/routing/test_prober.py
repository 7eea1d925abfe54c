"""Active probes through the scheduler: due only when idle, take a quota slot, failures count
against the breaker, passes never close it."""

from __future__ import annotations

import asyncio

import pytest

from imagegate.config import ApiKeyAuth, DeploymentConfig, Secret
from imagegate.policy.breaker import BreakerConfig
from imagegate.policy.health import HealthConfig
from imagegate.routing import AttemptResult, Scheduler
from imagegate.routing.prober import ProbeAnswer, due_probes, probe_due, run_prober

pytestmark = pytest.mark.looptime


def dep(name: str, rpm: int | None = 60) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        endpoint="http://azure.invalid",
        model="gpt-image-1",
        auth=ApiKeyAuth(key=Secret("k")),
        rpm=rpm,
    )


def scheduler(*deps: DeploymentConfig, **kw: object) -> Scheduler:
    loop = asyncio.get_running_loop()
    return Scheduler(
        deps,
        clock=loop.time,
        health_config=HealthConfig(interval_s=60, open_interval_s=10, idle_s=30),
        **kw,  # type: ignore[arg-type]
    )


async def test_probes_idle_deployments_and_records_verdicts() -> None:
    s = scheduler(dep("ok"), dep("badkey"), dep("gone"))
    answers: dict[str, ProbeAnswer] = {
        "ok": (400, "invalid_value", False),
        "badkey": (401, "401", False),
        "gone": (404, "DeploymentNotFound", False),
    }
    calls: list[str] = []

    async def probe(name: str) -> ProbeAnswer:
        calls.append(name)
        return answers[name]

    learnt = await probe_due(s, probe)
    assert {n: r.verdict for n, r in learnt.items()} == {
        "ok": "healthy",
        "badkey": "unhealthy",
        "gone": "unhealthy",
    }
    view = {v.name: v for v in await s.snapshot()}
    assert view["gone"].probe.startswith("unhealthy: deployment not found")
    assert view["ok"].in_flight == 0  # the quota slot was released
    assert await probe_due(s, probe) == {}  # not due again within the interval
    assert len(calls) == 3


async def test_live_traffic_makes_probes_unnecessary() -> None:
    s = scheduler(dep("a"))
    loop = asyncio.get_running_loop()
    lease = await s.acquire("default", ("a",), deadline=loop.time() + 1)
    await s.finish(lease, AttemptResult(status=200))
    assert await due_probes(s) == ()
    await asyncio.sleep(31)
    assert await due_probes(s) == ("a",)


async def test_failing_probes_open_the_breaker_and_passing_ones_do_not_close_it() -> None:
    s = scheduler(dep("a"), breaker_config=BreakerConfig(window_s=120, min_requests=2, cooldown_s=100))
    answer: ProbeAnswer = (None, None, True)

    async def probe(name: str) -> ProbeAnswer:
        return answer

    await probe_due(s, probe)
    await asyncio.sleep(60)
    await probe_due(s, probe)
    assert [v.breaker for v in await s.snapshot()] == ["open"]
    answer = (400, None, False)
    await asyncio.sleep(10)  # open breakers are probed every open_interval_s
    learnt = await probe_due(s, probe)
    assert learnt["a"].healthy
    assert [v.breaker for v in await s.snapshot()] == ["open"]


async def test_probe_without_quota_room_is_skipped() -> None:
    s = scheduler(dep("a", rpm=6))
    loop = asyncio.get_running_loop()
    assert await due_probes(s) == ("a",)  # never probed, no traffic
    lease = await s.acquire("default", ("a",), deadline=loop.time() + 1)  # the window's one slot
    calls: list[str] = []

    async def probe(name: str) -> ProbeAnswer:
        calls.append(name)
        return (400, None, False)

    assert await probe_due(s, probe) == {}
    assert calls == []
    await s.finish(lease, AttemptResult(status=200))


async def test_run_prober_loops_until_cancelled() -> None:
    s = scheduler(dep("a"))
    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def probe(name: str) -> ProbeAnswer:
        seen.append(loop.time())
        return (400, None, False)

    task = asyncio.ensure_future(run_prober(s, probe, sleep=asyncio.sleep, tick_s=5))
    await asyncio.sleep(130)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [0.0, 60.0, 120.0]
