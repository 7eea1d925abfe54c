"""Which deployments may serve a request, and in what order: a ranked plan with reasons.

Filters run before ranking, and every exclusion is explained (``Plan.excluded``) so the library,
``imagegate doctor`` and error messages can say *why* a deployment was not used:

1. capability — the caller (catalog) decides and passes ``Candidate.capable`` / ``incapable_reason``;
2. region allow-list — data residency (``RoutePolicy.allowed_regions``);
3. required tags;
4. breaker — open, or half-open with its single probe already in flight.

Strategies, chosen per logical model group:

| strategy | order |
|---|---|
| ``priority`` | lower ``priority`` first, then configuration order (failover) |
| ``weighted`` | weighted random without replacement, deterministic given ``rand`` in [0, 1) |
| ``least_latency`` | lowest recent latency estimate (see ``policy.latency``) first |
| ``lowest_cost`` | lowest ``cost_per_image`` × region price multiplier first |
| ``most_headroom`` | most free quota in the current window first |

With ``spill_over`` (default), candidates whose quota is exhausted right now keep their relative
order but move behind those with headroom: a saturated primary should not make a request wait when
a secondary is free. They stay in the plan, so the attempt loop can still wait for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "STRATEGIES",
    "Candidate",
    "Exclusion",
    "Plan",
    "RoutePolicy",
    "Signals",
    "Strategy",
    "plan",
    "retry_after_from",
]

Strategy = Literal["priority", "weighted", "least_latency", "lowest_cost", "most_headroom"]
STRATEGIES: tuple[Strategy, ...] = ("priority", "weighted", "least_latency", "lowest_cost", "most_headroom")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A deployment as routing sees it; the integration maps ``DeploymentConfig`` onto this."""

    name: str
    region: str = ""
    model: str = ""
    priority: int = 0
    weight: float = 1.0
    cost_per_image: float | None = None
    tags: frozenset[str] = frozenset()
    capable: bool = True
    incapable_reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signals:
    """Live state of one deployment at planning time (computed by the driver from the policies)."""

    breaker_available: bool = True
    breaker_until: float | None = None
    breaker_reason: str = ""
    headroom: float = 1.0
    latency_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePolicy:
    strategy: Strategy = "priority"
    allowed_regions: frozenset[str] | None = None
    required_tags: frozenset[str] = frozenset()
    region_cost_multipliers: Mapping[str, float] = field(default_factory=dict)
    spill_over: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True, slots=True)
class Exclusion:
    """``code`` is stable (capability, region, tags, breaker); ``reason`` is for humans."""

    name: str
    code: str
    reason: str
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    ranked: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...]
    strategy: Strategy

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.ranked)

    def retry_after_s(self, now: float) -> float | None:
        """When an empty plan might change: the earliest breaker re-opening among exclusions,
        rounded up to whole milliseconds (at least 1 ms), so a caller never busy-loops on dust."""
        times = [e.until for e in self.excluded if e.until is not None]
        return retry_after_from(min(times) - now) if times else None


def retry_after_from(seconds: float) -> float:
    """A retry-after for a caller: whole milliseconds, rounded up, at least 1 ms."""
    return max(0.001, math.ceil(seconds * 1000 - 1e-6) / 1000)


def _exclusion(policy: RoutePolicy, c: Candidate, sig: Signals) -> Exclusion | None:
    if not c.capable:
        return Exclusion(c.name, "capability", c.incapable_reason or "model cannot serve this request")
    if policy.allowed_regions is not None and c.region not in policy.allowed_regions:
        allowed = ", ".join(sorted(policy.allowed_regions)) or "none"
        return Exclusion(c.name, "region", f"region {c.region or '?'} not in allowed regions ({allowed})")
    missing = policy.required_tags - c.tags
    if missing:
        return Exclusion(c.name, "tags", f"missing tag(s): {', '.join(sorted(missing))}")
    if not sig.breaker_available:
        return Exclusion(c.name, "breaker", sig.breaker_reason or "circuit breaker open", sig.breaker_until)
    return None


def _cost(policy: RoutePolicy, c: Candidate) -> float:
    if c.cost_per_image is None:
        return math.inf
    return c.cost_per_image * policy.region_cost_multipliers.get(c.region, 1.0)


def _weighted(items: list[Candidate], rand: float) -> list[Candidate]:
    """Weighted sampling without replacement from one uniform number.

    After picking the interval ``rand`` fell in, ``rand`` is rescaled within that interval, which
    is again uniform on [0, 1) and independent of the pick, and used for the next draw.
    Zero-weight candidates go last, in priority order.
    """
    pool = [c for c in items if c.weight > 0]
    rest = sorted((c for c in items if c.weight <= 0), key=lambda c: c.priority)
    r = min(max(rand, 0.0), math.nextafter(1.0, 0.0))
    out: list[Candidate] = []
    while pool:
        total = sum(c.weight for c in pool)
        target = r * total
        acc = 0.0
        pick = len(pool) - 1
        for i, c in enumerate(pool):
            if target < acc + c.weight:
                pick = i
                break
            acc += c.weight
        chosen = pool.pop(pick)
        r = min(max((target - acc) / chosen.weight, 0.0), math.nextafter(1.0, 0.0))
        out.append(chosen)
    return out + rest


def _order(
    policy: RoutePolicy, items: list[Candidate], sig: Mapping[str, Signals], rand: float
) -> list[Candidate]:
    pos = {c.name: i for i, c in enumerate(items)}
    if policy.strategy == "priority":
        return sorted(items, key=lambda c: (c.priority, pos[c.name]))
    if policy.strategy == "weighted":
        return _weighted(sorted(items, key=lambda c: (c.priority, pos[c.name])), rand)
    if policy.strategy == "least_latency":

        def latency(c: Candidate) -> float:
            value = sig[c.name].latency_s
            return math.inf if value is None else value

        return sorted(items, key=lambda c: (latency(c), c.priority, pos[c.name]))
    if policy.strategy == "lowest_cost":
        return sorted(items, key=lambda c: (_cost(policy, c), c.priority, pos[c.name]))
    return sorted(items, key=lambda c: (-sig[c.name].headroom, c.priority, pos[c.name]))


def plan(
    policy: RoutePolicy,
    candidates: Iterable[Candidate],
    signals: Mapping[str, Signals] | None = None,
    *,
    rand: float = 0.0,
) -> Plan:
    """Filter, rank and explain. ``signals`` missing a name means "healthy, unknown latency"."""
    given = dict(signals or {})
    sig = {}
    kept: list[Candidate] = []
    excluded: list[Exclusion] = []
    seen: set[str] = set()
    for c in candidates:
        if c.name in seen:
            raise ValueError(f"duplicate candidate name {c.name!r}")
        seen.add(c.name)
        sig[c.name] = given.get(c.name, Signals())
        why = _exclusion(policy, c, sig[c.name])
        if why is None:
            kept.append(c)
        else:
            excluded.append(why)
    ranked = _order(policy, kept, sig, rand)
    if policy.spill_over:
        ranked.sort(key=lambda c: sig[c.name].headroom <= 0)  # stable: keeps strategy order
    return Plan(ranked=tuple(ranked), excluded=tuple(excluded), strategy=policy.strategy)
