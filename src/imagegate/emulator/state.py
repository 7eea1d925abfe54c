"""The emulator's run-time state: one :class:`DeploymentState` per configured deployment (quota
windows, fault script, counters, latency generator), the renderer, the stored DALL·E url blobs,
and the injected clock and sleep."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from imagegate.emulator.config import DeploymentSpec, EmulatorConfig, FaultSpec
from imagegate.emulator.counters import DeploymentCounters
from imagegate.emulator.faults import FaultScript
from imagegate.emulator.models import MODELS, ModelSpec
from imagegate.emulator.quotas import WindowQuota
from imagegate.emulator.render import Renderer

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

REGION_NAMES = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus3": "West US 3",
    "swedencentral": "Sweden Central",
    "northcentralus": "North Central US",
    "southcentralus": "South Central US",
    "polandcentral": "Poland Central",
    "uaenorth": "UAE North",
    "australiaeast": "Australia East",
    "japaneast": "Japan East",
}
MAX_BLOBS = 2000


def region_display(region: str) -> str:
    return REGION_NAMES.get(region, region)


@dataclass(slots=True)
class DeploymentState:
    spec: DeploymentSpec
    model: ModelSpec
    quota: WindowQuota
    faults: FaultScript
    counters: DeploymentCounters = field(default_factory=DeploymentCounters)
    rng: random.Random = field(default_factory=random.Random)

    @property
    def api_versions(self) -> tuple[str, ...]:
        return self.spec.api_versions if self.spec.api_versions is not None else self.model.api_versions


@dataclass(slots=True)
class Blob:
    expires_at: float
    b64: str
    content_type: str


class EmulatorState:
    """Everything the routes share. Built once per app."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        time_scale: float | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.config = config
        self.time_scale = config.time_scale if time_scale is None else max(0.0, time_scale)
        self.clock: Clock = clock or time.monotonic
        self.sleep: Sleep = sleep or asyncio.sleep
        self.renderer = Renderer(seed=config.seed, cache_bytes=config.cache_mb * 1024 * 1024)
        self.blobs: OrderedDict[str, Blob] = OrderedDict()
        self.deployments: dict[str, DeploymentState] = {}
        for i, spec in enumerate(config.deployments):
            self.deployments[spec.name] = DeploymentState(
                spec=spec,
                model=MODELS[spec.model],
                quota=WindowQuota(spec.per_window, spec.window_s, spec.concurrency),
                faults=FaultScript(spec.faults, installed_at=self.clock(), seed=config.seed + i),
                rng=random.Random(config.seed * 1000 + i),
            )

    def all_keys(self) -> set[str]:
        return {k for d in self.deployments.values() for k in d.spec.api_keys}

    def any_entra(self) -> bool:
        return any(d.spec.entra for d in self.deployments.values())

    def set_faults(self, name: str, specs: tuple[FaultSpec, ...]) -> None:
        dep = self.deployments[name]
        index = list(self.deployments).index(name)
        dep.faults = FaultScript(specs, installed_at=self.clock(), seed=self.config.seed + index + 7919)

    def reset(self) -> None:
        for dep in self.deployments.values():
            dep.counters = DeploymentCounters()
            dep.quota.reset()

    def store_blob(self, blob_id: str, blob: Blob) -> None:
        self.blobs[blob_id] = blob
        while len(self.blobs) > MAX_BLOBS:
            self.blobs.popitem(last=False)

    def describe(self, dep: DeploymentState) -> dict[str, Any]:
        spec = dep.spec.model_dump(mode="json", exclude={"api_keys", "faults"})
        spec["api_keys"] = f"<{len(dep.spec.api_keys)} key(s)>"
        spec["api_versions"] = list(dep.api_versions)
        spec["per_window"] = dep.spec.per_window
        now = self.clock()
        return {
            **spec,
            "family": dep.model.family,
            "quota": {
                "per_window": dep.quota.per_window,
                "window_s": dep.quota.window_s,
                "remaining": dep.quota.remaining(now),
                "in_flight": dep.quota.in_flight,
                "concurrency": dep.quota.concurrency,
            },
            "faults": dep.faults.describe(),
            "counters": dep.counters.as_dict(),
        }
