"""Active health probes that never buy an image.

LiteLLM's image health check generates a real, billed image per check, and has marked healthy
deployments unhealthy on content filters and bogus parameters (#16072, #26406). Ours sends a
generation request that Azure must reject *before* generating::

    POST /openai/deployments/{d}/images/generations   {"prompt": "", "n": 0}

The Azure spec requires ``prompt`` minLength 1 and ``n`` ≥ 1 for every image model, so no model can
accept it, and two independent violations guard against one of them being relaxed later. Azure
answers authentication (401) and deployment lookup (404 ``DeploymentNotFound``) before body
validation, so a **400 proves reachability, a valid key and an existing deployment** at zero cost.
It does not prove the generation backend works; passive health (live traffic through the breaker,
whose half-open probe is a real request) covers that. Hence a passing active probe never closes a
breaker; a failing one counts as a breaker failure.

When to probe: only when passive evidence is missing (no traffic for ``idle_s``), every
``interval_s``; more often (``open_interval_s``) while the breaker is not closed, to notice a
fixed key/deployment quickly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PROBE_BODY",
    "HealthConfig",
    "HealthState",
    "ProbeResult",
    "interpret",
    "observe_traffic",
    "record_probe",
    "should_probe",
]

PROBE_BODY: dict[str, object] = {"prompt": "", "n": 0}

Verdict = Literal["healthy", "unhealthy", "throttled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    interval_s: float = 60.0
    open_interval_s: float = 10.0
    idle_s: float = 30.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if min(self.interval_s, self.open_interval_s, self.idle_s, self.timeout_s) <= 0:
            raise ValueError("interval_s, open_interval_s, idle_s and timeout_s must all be > 0")


@dataclass(frozen=True, slots=True)
class HealthState:
    last_probe_at: float = -math.inf
    last_traffic_at: float = -math.inf
    last_result: ProbeResult | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """``verdict``: healthy (reachable, authorised, deployment exists), unhealthy, or throttled
    (reachable but out of quota: not a failure of the deployment)."""

    verdict: Verdict
    reason: str
    status: int | None = None

    @property
    def healthy(self) -> bool:
        return self.verdict != "unhealthy"


def should_probe(cfg: HealthConfig, s: HealthState, now: float, *, breaker_closed: bool = True) -> bool:
    """Probe when traffic has been idle for ``idle_s`` and the interval has elapsed."""
    if now - s.last_traffic_at < cfg.idle_s and breaker_closed:
        return False
    interval = cfg.interval_s if breaker_closed else cfg.open_interval_s
    return now - s.last_probe_at >= interval


def observe_traffic(s: HealthState, now: float) -> HealthState:
    """A live request reached the deployment (any response): passive evidence, no probe needed."""
    return HealthState(last_probe_at=s.last_probe_at, last_traffic_at=now, last_result=s.last_result)


def record_probe(s: HealthState, result: ProbeResult, now: float) -> HealthState:
    return HealthState(last_probe_at=now, last_traffic_at=s.last_traffic_at, last_result=result)


def interpret(
    status: int | None, *, upstream_code: str | None = None, timed_out: bool = False
) -> ProbeResult:
    """Read a probe's answer. ``status=None``: no response (connection refused, DNS, TLS)."""
    if timed_out:
        return ProbeResult("unhealthy", "probe timed out", status)
    if status is None:
        return ProbeResult("unhealthy", "no response (connection failed)")
    if status == 400:
        return ProbeResult("healthy", "reachable, key accepted, deployment exists (400 as intended)", 400)
    if status in (401, 403):
        return ProbeResult("unhealthy", f"authentication rejected ({status})", status)
    if status == 404:
        what = "deployment not found" if upstream_code == "DeploymentNotFound" else "route not found"
        return ProbeResult("unhealthy", f"{what} (404)", status)
    if status == 429:
        return ProbeResult("throttled", "reachable but rate limited (429)", status)
    if 200 <= status < 300:
        return ProbeResult("healthy", f"reachable; the invalid probe was accepted ({status}) — check", status)
    if status >= 500:
        return ProbeResult("unhealthy", f"server error ({status})", status)
    return ProbeResult("unhealthy", f"unexpected status {status}", status)
