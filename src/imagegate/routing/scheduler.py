"""The routing driver: ranked plans, fair waiting for capacity, and outcome bookkeeping.

Thin on purpose: every decision is a pure policy (``policy.routing``, ``breaker``, ``quota``,
``latency``, ``waitqueue``); this class loads state, calls them, stores state, and waits. The
clock, the sleep and the random source are injected, so tests run in virtual time.

How the attempt loop uses it::

    plan = await scheduler.plan(group, deployments, quality=req.quality)
    lease = await scheduler.acquire(group, plan.names, deadline=deadline)   # may wait, fairly
    ... send to lease.deployment ...
    await scheduler.finish(lease, AttemptResult(status=..., retry_after_s=..., remaining_requests=...))

``acquire`` takes the first deployment, in plan order, that both its breaker and its quota admit.
When none does, the request queues FIFO behind earlier requests for the same logical model and
sleeps until capacity is expected (or it is woken by a ``finish``). It raises ``RateLimited`` with
an honest ``retry_after_s`` as soon as the expected start is past its deadline, and
``NoDeploymentAvailable`` at once when every deployment is excluded for health (not capacity)
reasons: waiting for a broken deployment helps nobody.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from imagegate.config import DeploymentConfig, ImageGateConfig
from imagegate.errors import NoDeploymentAvailable, RateLimited
from imagegate.ids import new_hex_id
from imagegate.policy import breaker, latency, quota, routing, waitqueue
from imagegate.policy import health as health_policy
from imagegate.routing.configured import breaker_config, quota_config, route_policy
from imagegate.routing.state import DeploymentState, InMemoryStateStore, StateStore

__all__ = [
    "AttemptResult",
    "Blocked",
    "DeploymentView",
    "Lease",
    "Scheduler",
    "breaker_config",
    "quota_config",
    "route_policy",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

ANY_QUALITY = "*"
MIN_SLEEP_S = 0.001


@dataclass(frozen=True, slots=True)
class Lease:
    """Permission to send one attempt to ``deployment``; hand it back to ``finish``."""

    deployment: str
    group: str
    probe: bool
    started_at: float
    quota_held: bool
    window_used: int = 1  # grants in the quota window at admission (for x-ratelimit learning)
    lease_id: str = ""  # the quota's concurrency lease (reclaimed at its expiry if never finished)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    """What came back. ``status=None`` and not ``timed_out``: no response (connect error).
    ``cancelled``: the attempt was abandoned before an outcome (caller went away)."""

    status: int | None
    retry_after_s: float | None = None
    remaining_requests: int | None = None
    timed_out: bool = False
    quality: str | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a deployment could not take an attempt now."""

    deployment: str
    until: float | None
    reason: str
    health: bool  # excluded for health (breaker tripped by failures) rather than capacity


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """One deployment as ``imagegate doctor`` shows it."""

    name: str
    breaker: breaker.Status
    breaker_reason: str
    breaker_until: float | None
    effective_rpm: float | None
    configured_rpm: float | None
    headroom: float
    in_flight: int
    latency_s: Mapping[str, float]
    probe: str  # the last active probe's verdict and reason, or "not probed"
    window_used: int = 0  # our grants in the current quota window
    window_allowed: int | None = None  # requests the effective RPM allows per window
    window_s: float | None = None  # the (effective) window judged over
    reported_remaining: int | None = None  # the last x-ratelimit-remaining-requests
    reported_age_s: float | None = None  # how long ago Azure reported it
    latency_p95_s: Mapping[str, float] = field(default_factory=dict)  # p95-ish, per quality


class Scheduler:
    def __init__(
        self,
        deployments: Sequence[DeploymentConfig],
        *,
        policies: Mapping[str, routing.RoutePolicy] | None = None,
        default_policy: routing.RoutePolicy = routing.RoutePolicy(),
        breaker_config: breaker.BreakerConfig = breaker.BreakerConfig(),
        latency_config: latency.LatencyConfig = latency.LatencyConfig(),
        health_config: health_policy.HealthConfig = health_policy.HealthConfig(),
        store: StateStore | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._deployments = {d.name: d for d in deployments}
        self._quota = {d.name: q for d in deployments if (q := quota_config(d)) is not None}
        self._policies = dict(policies or {})
        self._default_policy = default_policy
        self._breaker = breaker_config
        self._latency = latency_config
        self._health = health_config
        self._store: StateStore = store if store is not None else InMemoryStateStore()
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._queue = waitqueue.WaitQueue()
        self._events: dict[int, asyncio.Event] = {}
        self._ids = itertools.count(1)

    @classmethod
    def from_config(cls, cfg: ImageGateConfig, **kwargs: Any) -> Scheduler:
        """A scheduler for every deployment in ``cfg``, with each group's routing policy."""
        policies = {group: route_policy(g) for group, g in cfg.routing.items()}
        kwargs.setdefault("breaker_config", breaker_config(cfg.breaker))
        return cls(cfg.deployments, policies=policies, **kwargs)

    # -- planning -------------------------------------------------------------------------

    def policy_for(self, group: str) -> routing.RoutePolicy:
        return self._policies.get(group, self._default_policy)

    async def plan(
        self,
        group: str,
        deployments: Sequence[DeploymentConfig],
        *,
        quality: str | None = None,
        incapable: Mapping[str, str] | None = None,
        cost_per_image: Mapping[str, float] | None = None,
    ) -> routing.Plan:
        """Rank ``deployments`` for ``group``. ``incapable`` maps names to why they cannot serve
        this request (from the catalog); ``cost_per_image`` feeds the lowest-cost strategy."""
        now = self._clock()
        incapable = incapable or {}
        costs = cost_per_image or {}
        candidates = []
        signals = {}
        for d in deployments:
            candidates.append(
                routing.Candidate(
                    name=d.name,
                    region=d.region or "",
                    model=d.model,
                    priority=d.priority,
                    weight=d.weight,
                    cost_per_image=costs.get(d.name),
                    tags=frozenset(d.tags),
                    capable=d.name not in incapable,
                    incapable_reason=incapable.get(d.name, ""),
                )
            )
            signals[d.name] = self._signals(d.name, await self._store.read(d.name), quality, now)
        return routing.plan(self.policy_for(group), candidates, signals, rand=self._rand())

    def _signals(self, name: str, st: DeploymentState, quality: str | None, now: float) -> routing.Signals:
        decision = breaker.allows(self._breaker, st.breaker, now)
        qcfg = self._quota.get(name)
        room = quota.headroom(qcfg, st.quota, now) if qcfg is not None else 1.0
        est = st.latency.get(quality or ANY_QUALITY) or st.latency.get(ANY_QUALITY)
        # A breaker open for capacity (429 + retry-after) is not a health exclusion: keep it in
        # the plan with no headroom, so the request can wait for it rather than fail.
        available = not isinstance(decision, breaker.Deny) or st.breaker.throttled
        if isinstance(decision, breaker.Deny) and st.breaker.throttled:
            room = 0.0
        return routing.Signals(
            breaker_available=available,
            breaker_until=decision.until if isinstance(decision, breaker.Deny) else None,
            breaker_reason=decision.reason if isinstance(decision, breaker.Deny) else "",
            headroom=room,
            latency_s=latency.estimate(self._latency, est),
        )

    # -- admission --------------------------------------------------------------------------

    async def acquire(
        self, group: str, names: Sequence[str], *, deadline: float, request_deadline: float | None = None
    ) -> Lease:
        """A lease on the first deployment in ``names`` that can take an attempt, waiting fairly
        (FIFO per ``group``) until ``deadline`` at the latest. The quota slot is reclaimed shortly
        after ``request_deadline`` (or the quota's ``max_lease_s``) if ``finish`` never comes."""
        if not names:
            raise NoDeploymentAvailable(f"no deployment can serve {group!r}")
        wid = next(self._ids)
        self._queue = waitqueue.enqueue(
            self._queue, waitqueue.Waiter(id=wid, model=group, enqueued_at=self._clock(), deadline=deadline)
        )
        event = self._events[wid] = asyncio.Event()
        try:
            while True:
                event.clear()
                now = self._clock()
                is_head = waitqueue.head(self._queue, group) == self._queue_entry(wid)
                blocked: list[Blocked] = []
                if is_head:
                    for name in names:
                        got = await self._store.update(
                            name, self._try_take(name, group, now, request_deadline)
                        )
                        if isinstance(got, Lease):
                            return got
                        blocked.append(got)
                else:
                    blocked = [await self._peek(name, now) for name in names]
                until = await self._next_step(group, wid, names, blocked, now, deadline)
                await self._wait(event, until)
        finally:
            self._queue = waitqueue.dequeue(self._queue, wid)
            del self._events[wid]
            self._wake_heads()

    def _queue_entry(self, wid: int) -> waitqueue.Waiter | None:
        return next((w for w in self._queue.waiters if w.id == wid), None)

    async def _next_step(
        self,
        group: str,
        wid: int,
        names: Sequence[str],
        blocked: list[Blocked],
        now: float,
        deadline: float,
    ) -> float:
        """Raise if the request cannot be served in time; else return when to look again."""
        if blocked and all(b.health for b in blocked):
            times = [b.until for b in blocked if b.until is not None]
            reasons = "; ".join(f"{b.deployment}: {b.reason}" for b in blocked)
            raise NoDeploymentAvailable(
                f"every deployment for {group!r} is unavailable ({reasons})",
                retry_after_s=routing.retry_after_from(min(times) - now) if times else None,
            )
        waitable = [b for b in blocked if not b.health]
        expected = [
            b.until if b.until is not None else now + await self._busy_s(b.deployment) for b in waitable
        ]
        capacity_at = min(expected, default=now)
        interval = await self._interval_s(names, now)
        decision = waitqueue.decide(self._queue, wid, now, capacity_at, interval)
        if isinstance(decision, waitqueue.Reject) or now >= deadline:
            retry_after = decision.retry_after_s if isinstance(decision, waitqueue.Reject) else 0.0
            retry_after = routing.retry_after_from(max(retry_after, capacity_at - now))
            raise RateLimited(
                f"no capacity for {group!r} before the request's deadline; "
                f"expected in {retry_after:.1f}s ({'; '.join(b.reason for b in blocked) or 'queued'})",
                retry_after_s=retry_after,
            )
        if isinstance(decision, waitqueue.WaitUntil) and decision.until is not None:
            return min(decision.until, deadline)
        if isinstance(decision, waitqueue.Admit):
            return now  # capacity is here: loop again at once
        return deadline

    def _try_take(
        self, name: str, group: str, now: float, request_deadline: float | None
    ) -> Callable[[DeploymentState], tuple[Lease | Blocked, DeploymentState]]:
        qcfg = self._quota.get(name)
        lease_id = new_hex_id()  # unique across replicas sharing the state

        def step(st: DeploymentState) -> tuple[Lease | Blocked, DeploymentState]:
            blocked = self._blocked_by_breaker(name, st, now)
            if blocked is not None:
                return blocked, st
            qs = st.quota
            used = 1
            if qcfg is not None:
                answer, qs = quota.try_acquire(
                    qcfg, st.quota, now, lease_id=lease_id, deadline=request_deadline
                )
                if isinstance(answer, quota.Wait):
                    return Blocked(name, answer.until, answer.reason, health=False), replace(st, quota=qs)
                used = answer.used
            decision, bs = breaker.acquire(self._breaker, st.breaker, now)
            lease = Lease(
                deployment=name,
                group=group,
                probe=isinstance(decision, breaker.Probe),
                started_at=now,
                quota_held=qcfg is not None,
                window_used=used,
                lease_id=lease_id,
            )
            return lease, replace(st, breaker=bs, quota=qs)

        return step

    def _blocked_by_breaker(self, name: str, st: DeploymentState, now: float) -> Blocked | None:
        decision = breaker.allows(self._breaker, st.breaker, now)
        if not isinstance(decision, breaker.Deny):
            return None
        return Blocked(name, decision.until, decision.reason, health=not st.breaker.throttled)

    async def _peek(self, name: str, now: float) -> Blocked:
        """Not at the head: only estimate when this deployment might have room (no state change)."""
        st = await self._store.read(name)
        blocked = self._blocked_by_breaker(name, st, now)
        if blocked is not None:
            return blocked
        qcfg = self._quota.get(name)
        if qcfg is None:
            return Blocked(name, now, "queued behind earlier requests", health=False)
        answer, _ = quota.try_acquire(qcfg, st.quota, now)
        if isinstance(answer, quota.Wait):
            return Blocked(name, answer.until, answer.reason, health=False)
        return Blocked(name, now, "queued behind earlier requests", health=False)

    async def _busy_s(self, name: str) -> float:
        """Expected time until an in-flight request on ``name`` ends (for concurrency waits)."""
        st = await self._store.read(name)
        known = [latency.estimate(self._latency, e) for e in st.latency.values()]
        return min(known) if known else self._latency.prior_s

    async def _interval_s(self, names: Sequence[str], now: float) -> float:
        """Seconds between slots across ``names`` on aggregate (0 when any is unlimited)."""
        total = 0.0
        for name in names:
            qcfg = self._quota.get(name)
            if qcfg is None:
                return 0.0
            total += quota.effective_rpm(qcfg, (await self._store.read(name)).quota, now)
        return 60.0 / total if total > 0 else 0.0

    async def _wait(self, event: asyncio.Event, until: float) -> None:
        delay = until - self._clock()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        # Float dust (until = now + 4e-15) must not become a sleep the clock cannot resolve.
        delay = max(delay, MIN_SLEEP_S)
        woken = asyncio.ensure_future(event.wait())
        slept = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, slept):
                task.cancel()
            await asyncio.gather(woken, slept, return_exceptions=True)

    def _wake_heads(self) -> None:
        for model in {w.model for w in self._queue.waiters}:
            first = waitqueue.head(self._queue, model)
            if first is not None:
                self._events[first.id].set()

    # -- outcomes ---------------------------------------------------------------------------

    async def finish(self, lease: Lease, result: AttemptResult) -> None:
        """Record an attempt's outcome (breaker, quota learning, latency, health) and release."""
        now = self._clock()
        qcfg = self._quota.get(lease.deployment)

        def step(st: DeploymentState) -> tuple[None, DeploymentState]:
            qs = quota.release(st.quota, lease.lease_id) if lease.quota_held else st.quota
            if result.cancelled:
                bs = breaker.abandon(st.breaker) if lease.probe else st.breaker
                return None, replace(st, breaker=bs, quota=qs)
            outcome = replace(
                breaker.outcome_for_status(
                    result.status, retry_after_s=result.retry_after_s, timed_out=result.timed_out
                ),
                started_at=lease.started_at,
            )
            bs = breaker.record(self._breaker, st.breaker, outcome, now)
            if qcfg is not None:
                if result.status == 429:
                    qs = quota.on_throttled(qcfg, qs, result.retry_after_s, now, used=lease.window_used)
                if result.remaining_requests is not None:
                    qs = quota.on_remaining(
                        qcfg, qs, result.remaining_requests, lease.started_at, lease.window_used
                    )
            lat = st.latency
            if result.status is not None and 200 <= result.status < 300 and not result.timed_out:
                took = now - lease.started_at
                lat = dict(st.latency)
                for key in {result.quality or ANY_QUALITY, ANY_QUALITY}:
                    lat[key] = latency.observe(
                        self._latency, st.latency.get(key, latency.LatencyEstimate()), took, now
                    )
                lat = MappingProxyType(lat)
            hs = health_policy.observe_traffic(st.health, now) if result.status is not None else st.health
            reported = st.reported_remaining
            if result.remaining_requests is not None and result.remaining_requests >= 0:
                reported = (result.remaining_requests, now)
            return None, DeploymentState(
                breaker=bs, quota=qs, latency=lat, health=hs, reported_remaining=reported
            )

        await self._store.update(lease.deployment, step)
        self._wake_heads()

    # -- what the active prober (``routing.prober``) reads and writes through --------------

    @property
    def deployment_names(self) -> tuple[str, ...]:
        return tuple(self._deployments)

    @property
    def store(self) -> StateStore:
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def breaker_settings(self) -> breaker.BreakerConfig:
        return self._breaker

    @property
    def health_settings(self) -> health_policy.HealthConfig:
        return self._health

    def quota_for(self, name: str) -> quota.QuotaConfig | None:
        return self._quota.get(name)

    def wake(self) -> None:
        """Let the head waiters look again (state changed outside ``finish``)."""
        self._wake_heads()

    async def learnt_latency_s(self, name: str) -> Mapping[str, float]:
        """The learnt mean latency of ``name`` per observed quality (one state read; the fallback
        stage's deadline check uses the catalog's typical latency for the others)."""
        st = await self._store.read(name)
        return {q: latency.estimate(self._latency, e) for q, e in st.latency.items() if q != ANY_QUALITY}

    async def latency_p95_s(self, names: Sequence[str], quality: str | None) -> list[float]:
        """The learnt p95 latency of each of ``names`` that has one, for ``quality`` (or over all
        qualities when that one has not been observed): what admission needs of ``snapshot``,
        without building the whole status view on every request."""
        seen = []
        for name in names:
            if name not in self._deployments:
                continue
            est = (await self._store.read(name)).latency
            known = est.get(quality or ANY_QUALITY) or est.get(ANY_QUALITY)
            if known is not None:
                seen.append(latency.p95(self._latency, known))
        return seen

    def queued(self) -> int:
        """Requests waiting for capacity right now (all groups)."""
        return len(self._queue.waiters)

    # -- inspection -------------------------------------------------------------------------

    async def snapshot(self) -> tuple[DeploymentView, ...]:
        now = self._clock()
        views = []
        for name in self._deployments:
            st = await self._store.read(name)
            qcfg = self._quota.get(name)
            decision = breaker.allows(self._breaker, st.breaker, now)
            rpm = quota.effective_rpm(qcfg, st.quota, now) if qcfg else None
            reported = st.reported_remaining
            views.append(
                DeploymentView(
                    name=name,
                    breaker=breaker.status_at(self._breaker, st.breaker, now),
                    breaker_reason=st.breaker.reason,
                    breaker_until=decision.until if isinstance(decision, breaker.Deny) else None,
                    effective_rpm=rpm,
                    configured_rpm=qcfg.rpm if qcfg else None,
                    headroom=quota.headroom(qcfg, st.quota, now) if qcfg else 1.0,
                    in_flight=quota.in_flight(st.quota, now),
                    latency_s={k: latency.estimate(self._latency, v) for k, v in st.latency.items()},
                    probe=(
                        f"{st.health.last_result.verdict}: {st.health.last_result.reason}"
                        if st.health.last_result is not None
                        else "not probed"
                    ),
                    window_used=len(quota.grants_in_window(qcfg, st.quota, now)) if qcfg else 0,
                    window_allowed=quota.allowance(qcfg, rpm) if qcfg and rpm else None,
                    window_s=quota.effective_window_s(qcfg, rpm) if qcfg and rpm else None,
                    reported_remaining=reported[0] if reported else None,
                    reported_age_s=now - reported[1] if reported else None,
                    latency_p95_s={k: latency.p95(self._latency, v) for k, v in st.latency.items()},
                )
            )
        return tuple(views)
