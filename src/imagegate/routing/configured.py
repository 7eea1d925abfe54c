"""The loaded configuration turned into the pure policies' configurations (quota, breaker,
routing), for ``Scheduler.from_config``. Kept apart from the scheduler: translation, not driving."""

from __future__ import annotations

import math
from typing import cast

from imagegate.config import BreakerSettings, DeploymentConfig, GroupRouting
from imagegate.policy import breaker, quota, routing

__all__ = ["breaker_config", "quota_config", "route_policy"]


def quota_config(d: DeploymentConfig) -> quota.QuotaConfig | None:
    """The quota model for a deployment: its RPM judged over its window, plus its concurrency."""
    if d.rpm is None and d.concurrency is None:
        return None
    window = d.rpm_window_s
    # Concurrency only: an RPM so high it never binds keeps one code path.
    rpm = float(d.rpm) if d.rpm is not None else math.inf
    if math.isinf(rpm):
        rpm = 1e9
    return quota.QuotaConfig(rpm=rpm, window_s=window, max_concurrent=d.concurrency)


def breaker_config(b: BreakerSettings) -> breaker.BreakerConfig:
    """The pure breaker configuration for the file's ``breaker:`` settings."""
    return breaker.BreakerConfig(
        window_s=b.window_s,
        min_requests=b.min_requests,
        failure_rate=b.failure_rate,
        consecutive_failures=b.consecutive_failures,
        cooldown_s=b.cooldown_s,
        max_cooldown_s=b.max_cooldown_s,
        cooldown_on_429=b.cooldown_on_429,
    )


def route_policy(g: GroupRouting) -> routing.RoutePolicy:
    """The pure routing policy for a configured group (the loader has validated the strategy)."""
    return routing.RoutePolicy(
        strategy=cast(routing.Strategy, g.strategy),
        allowed_regions=frozenset(g.regions) if g.regions is not None else None,
        required_tags=frozenset(g.required_tags),
    )
