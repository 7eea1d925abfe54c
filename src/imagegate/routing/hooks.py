"""Routing plugged into the upstream attempt loop (``upstream.client.AttemptHooks``).

One ``RoutingHooks`` per request. The loop asks ``choose`` before every attempt: we wait (fairly,
until the request's deadline) for the first deployment of the remaining plan that breaker and
quota admit, preferring ones this request has not already failed on. ``finished`` feeds the
attempt's record back into breaker, quota learning and latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagegate.config import DeploymentConfig
from imagegate.routing.scheduler import AttemptResult, Lease, Scheduler
from imagegate.types import AttemptRecord

__all__ = ["RoutingHooks"]

TIMEOUT_OUTCOMES = frozenset({"upstream_timeout"})


class RoutingHooks:
    def __init__(self, scheduler: Scheduler, group: str, *, deadline: float, quality: str | None) -> None:
        self._scheduler = scheduler
        self._group = group
        self._deadline = deadline
        self._quality = quality
        self._leases: dict[str, list[Lease]] = {}
        self._failed: set[str] = set()

    async def choose(self, plan: Sequence[DeploymentConfig], suggested: int) -> DeploymentConfig:
        remaining = list(plan[suggested:]) or list(plan)
        fresh = [d for d in remaining if d.name not in self._failed]
        names = tuple(d.name for d in (fresh or remaining))
        # Waiting is useful only while the attempt can still finish by the deadline: a request
        # admitted with less time left than the upstream takes is cut off by its read timeout
        # after it was sent (billed, nothing delivered) and wastes a quota slot on the way.
        latest_start = self._deadline - await self._expected_latency_s(names)
        lease = await self._scheduler.acquire(
            self._group, names, deadline=latest_start, request_deadline=self._deadline
        )
        self._leases.setdefault(lease.deployment, []).append(lease)
        return next(d for d in plan if d.name == lease.deployment)

    async def _expected_latency_s(self, names: Sequence[str]) -> float:
        """The quickest observed p95-ish latency among ``names`` for this quality (0 when none
        has been observed yet: never refuse on a guess). The p95 rather than the mean: admitted
        with only the mean left, half the requests would still be cut off (bench_goodput)."""
        return min(await self._scheduler.latency_p95_s(names, self._quality), default=0.0)

    async def finished(self, dep: DeploymentConfig, record: AttemptRecord) -> None:
        leases = self._leases.get(dep.name)
        if not leases:
            return  # not chosen through us (no lease to return)
        lease = leases.pop(0)
        if record.outcome != "ok":
            self._failed.add(dep.name)
        await self._scheduler.finish(
            lease,
            AttemptResult(
                status=record.status_code,
                retry_after_s=record.retry_after_s,
                remaining_requests=record.remaining_requests,
                timed_out=record.outcome in TIMEOUT_OUTCOMES,
                quality=self._quality,
                cancelled=record.outcome == "cancelled",
            ),
        )
