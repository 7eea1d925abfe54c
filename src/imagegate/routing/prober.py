"""Active health probing: which deployments are due, a probe's quota slot, and its verdict in
the breaker and health state; plus the loop that does it.

Probes go through the scheduler's state store (``Scheduler.store``) with the same pure policies
(``policy.health``, ``breaker``, ``quota``), so the scheduler stays the admission and ranking
driver and this module owns active probing.

``probe`` is injected (the upstream client's ``probe`` in the gateway; a fake in tests) and
returns the HTTP status (None: no response), the upstream error ``code`` and whether it timed out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from imagegate.ids import new_hex_id
from imagegate.policy import breaker, quota
from imagegate.policy import health as health_policy
from imagegate.policy.health import ProbeResult
from imagegate.routing.scheduler import AttemptResult, Lease, Scheduler, Sleep
from imagegate.routing.state import DeploymentState

__all__ = ["ProbeAnswer", "begin_probe", "due_probes", "finish_probe", "probe_due", "run_prober"]

ProbeAnswer = tuple[int | None, str | None, bool]
ProbeFn = Callable[[str], Awaitable[ProbeAnswer]]


async def due_probes(scheduler: Scheduler) -> tuple[str, ...]:
    """Deployments an active probe should look at now (see ``policy.health.should_probe``)."""
    now = scheduler.clock()
    due = []
    for name in scheduler.deployment_names:
        st = await scheduler.store.read(name)
        closed = breaker.status_at(scheduler.breaker_settings, st.breaker, now) == "closed"
        if health_policy.should_probe(scheduler.health_settings, st.health, now, breaker_closed=closed):
            due.append(name)
    return tuple(due)


async def begin_probe(scheduler: Scheduler, name: str) -> Lease | None:
    """A probe counts against Azure's request quota like any request, so it takes a quota
    slot (without waiting: with no room there is live traffic, which is evidence enough).
    Returns None when there is no room now."""
    now = scheduler.clock()
    qcfg = scheduler.quota_for(name)
    lease_id = new_hex_id()

    def step(st: DeploymentState) -> tuple[Lease | None, DeploymentState]:
        if qcfg is None:
            return Lease(name, "", probe=False, started_at=now, quota_held=False), st
        answer, qs = quota.try_acquire(qcfg, st.quota, now, lease_id=lease_id)
        if isinstance(answer, quota.Wait):
            return None, replace(st, quota=qs)
        lease = Lease(name, "", probe=False, started_at=now, quota_held=True, lease_id=lease_id)
        return lease, replace(st, quota=qs)

    return await scheduler.store.update(name, step)


async def finish_probe(
    scheduler: Scheduler,
    lease: Lease,
    status: int | None,
    *,
    upstream_code: str | None = None,
    timed_out: bool = False,
) -> ProbeResult:
    """Record a probe's answer. A failing probe counts as a breaker failure; a passing one
    never closes a breaker (it proves reachability, not generation)."""
    now = scheduler.clock()
    result = health_policy.interpret(status, upstream_code=upstream_code, timed_out=timed_out)

    def step(st: DeploymentState) -> tuple[None, DeploymentState]:
        qs = quota.release(st.quota, lease.lease_id) if lease.quota_held else st.quota
        bs = st.breaker
        if result.verdict == "unhealthy":
            failed = breaker.Outcome(ok=False, status=status, reason=f"probe: {result.reason}")
            bs = breaker.record(scheduler.breaker_settings, bs, failed, now)
        hs = health_policy.record_probe(st.health, result, now)
        return None, replace(st, breaker=bs, quota=qs, health=hs)

    await scheduler.store.update(lease.deployment, step)
    scheduler.wake()
    return result


async def probe_due(scheduler: Scheduler, probe: ProbeFn) -> dict[str, ProbeResult]:
    """Probe every deployment that is due now, one after another; returns what was learnt."""
    learnt: dict[str, ProbeResult] = {}
    for name in await due_probes(scheduler):
        lease = await begin_probe(scheduler, name)
        if lease is None:
            continue
        try:
            status, code, timed_out = await probe(name)
        except BaseException:
            await scheduler.finish(lease, AttemptResult(status=None, cancelled=True))  # just release
            raise
        learnt[name] = await finish_probe(scheduler, lease, status, upstream_code=code, timed_out=timed_out)
    return learnt


async def run_prober(scheduler: Scheduler, probe: ProbeFn, *, sleep: Sleep, tick_s: float = 1.0) -> None:
    """Forever: probe what is due, then sleep ``tick_s``. Cancel the task to stop it."""
    while True:
        await probe_due(scheduler, probe)
        await sleep(tick_s)
