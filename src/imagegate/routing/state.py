"""Where per-deployment routing state lives: breaker, quota, latency, health.

The scheduler only ever changes state through ``StateStore.update(name, fn)``: an atomic
read-modify-write where ``fn`` is a pure function of the current state (it calls the policies).
In process that is a dict; a Redis adapter can implement the same Protocol with a
``WATCH``/``MULTI`` loop (or a Lua script) so several gateway replicas share cool-downs and quota,
which APIM's per-instance breaker cannot ("only approximate", peers.md §APIM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar

from imagegate.policy.breaker import BreakerState
from imagegate.policy.health import HealthState
from imagegate.policy.latency import LatencyEstimate
from imagegate.policy.quota import QuotaState

__all__ = ["DeploymentState", "InMemoryStateStore", "StateStore"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """Everything routing knows about one deployment. ``latency`` is keyed by quality."""

    breaker: BreakerState = field(default_factory=BreakerState)
    quota: QuotaState = field(default_factory=QuotaState)
    latency: Mapping[str, LatencyEstimate] = field(default_factory=lambda: MappingProxyType({}))
    health: HealthState = field(default_factory=HealthState)
    # the last x-ratelimit-remaining-requests Azure reported, and when (for status displays)
    reported_remaining: tuple[int, float] | None = None


# A deployment never seen yet (frozen, so one instance serves every read).
_FRESH = DeploymentState()


class StateStore(Protocol):
    async def read(self, name: str) -> DeploymentState: ...

    async def update(self, name: str, fn: Callable[[DeploymentState], tuple[T, DeploymentState]]) -> T:
        """Apply ``fn`` atomically to the deployment's state, store its new state, return its value."""
        ...


class InMemoryStateStore:
    """One process's state. ``update`` never awaits between read and write, so it is atomic
    under asyncio without a lock."""

    def __init__(self) -> None:
        self._states: dict[str, DeploymentState] = {}

    async def read(self, name: str) -> DeploymentState:
        state = self._states.get(name)
        return _FRESH if state is None else state

    async def update(self, name: str, fn: Callable[[DeploymentState], tuple[T, DeploymentState]]) -> T:
        state = self._states.get(name)
        value, new = fn(_FRESH if state is None else state)
        self._states[name] = new
        return value
