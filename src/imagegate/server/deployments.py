"""What routing knows about each deployment, shown to operators: the ``GET /admin/status`` body,
the per-deployment gauges refreshed at each ``/metrics`` scrape, and the active prober task.

Everything is read from the library's public face (``AsyncImageGate.status()`` and
``scheduler.queued()``) at the moment it is asked for, so there is no background polling and
nothing goes stale between scrapes. The prober runs ``routing.prober.probe_due`` every tick
with the upstream client's no-cost probe (a deliberately invalid request, refused before any
image is made); this module only adapts its answer and supervises the task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from imagegate.api import AsyncImageGate
from imagegate.routing.prober import ProbeAnswer, probe_due
from imagegate.routing.scheduler import DeploymentView
from imagegate.server.failure_log import FailureLog
from imagegate.server.metrics import GAUGE_REFRESH_S, GatewayMetrics

__all__ = [
    "DeploymentStatus",
    "StatusSource",
    "refresh_gauges",
    "run_gateway_prober",
    "run_gauge_refresher",
    "status_json",
    "status_source",
]

log = logging.getLogger("imagegate.server.prober")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One reading: every deployment's view, the requests waiting for capacity, and the
    scheduler clock the views' absolute times (``breaker_until``) are on."""

    views: tuple[DeploymentView, ...]
    queued: int
    now: float


StatusSource = Callable[[], Awaitable[DeploymentStatus]]


def status_source(gate: AsyncImageGate) -> StatusSource:
    async def read() -> DeploymentStatus:
        views = await gate.status()
        return DeploymentStatus(views, gate.scheduler.queued(), gate.scheduler.clock())

    return read


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _view_json(v: DeploymentView, now: float) -> dict[str, Any]:
    return {
        "name": v.name,
        "breaker": {
            "state": v.breaker,
            "reason": v.breaker_reason,
            # the scheduler's clock is monotonic: say "for how long", not "until when"
            "open_for_s": None if v.breaker_until is None else _round(max(0.0, v.breaker_until - now)),
        },
        "quota": {
            "headroom": _round(v.headroom),
            "effective_rpm": _round(v.effective_rpm),
            "configured_rpm": _round(v.configured_rpm),
            "in_flight": v.in_flight,
            "window_used": v.window_used,
            "window_allowed": v.window_allowed,
            "window_s": _round(v.window_s),
            "reported_remaining": v.reported_remaining,
            "reported_age_s": _round(v.reported_age_s),
        },
        "latency_s": {q: _round(s) for q, s in sorted(v.latency_s.items())},
        "latency_p95_s": {q: _round(s) for q, s in sorted(v.latency_p95_s.items())},
        "probe": v.probe,
    }


def status_json(status: DeploymentStatus) -> dict[str, Any]:
    """The body of ``GET /admin/status``."""
    return {
        "object": "list",
        "queued": status.queued,
        "data": [_view_json(v, status.now) for v in status.views],
    }


def refresh_gauges(metrics: GatewayMetrics, status: DeploymentStatus) -> None:
    """Set the per-deployment gauges from one reading (called by the ``/metrics`` handler)."""
    for v in status.views:
        metrics.observe_breaker(deployment=v.name, state=v.breaker)
        metrics.observe_quota(
            deployment=v.name, headroom=v.headroom, effective_rpm=v.effective_rpm, in_flight=v.in_flight
        )
    metrics.queued.set(status.queued)


def gate_probe(gate: AsyncImageGate) -> Callable[[str], Awaitable[ProbeAnswer]]:
    """``run_prober``'s probe over ``UpstreamClient.probe``: the HTTP status, or ``None`` when
    there was no response. (That probe reports neither Azure's error code nor whether it timed
    out, so a 404 reads "route not found" and a timeout "no response"; both count as unhealthy
    either way.)"""
    deployments = {d.name: d for d in gate.config.deployments}

    async def probe(name: str) -> ProbeAnswer:
        result = await gate.upstream.probe(deployments[name])
        return result.status_code, None, False

    return probe


async def run_gateway_prober(gate: AsyncImageGate, *, tick_s: float, sleep: Sleep) -> None:
    """``run_prober``'s loop: probe what is due every ``tick_s`` until cancelled. A failing pass
    (a state store that is down, say) is reported by a :class:`FailureLog` (one WARNING line per
    kind of failure) and the loop carries on after a tick; it never ends the task."""
    probe = gate_probe(gate)

    async def once() -> None:
        await probe_due(gate.scheduler, probe)

    await _every(tick_s, once, FailureLog(log, "active probing", retry_every_s=tick_s), sleep)


async def run_gauge_refresher(
    metrics: GatewayMetrics,
    status: StatusSource | None,
    *,
    sleep: Sleep,
    tick_s: float = GAUGE_REFRESH_S,
) -> None:
    """With several worker processes a scrape is answered by one of them from every worker's
    metric files, so each worker writes what only it knows (its routing view, its queue, its
    ledger backlog) every ``tick_s`` until cancelled. A failing read (routing state in a Redis
    that is down: ``/readyz`` says so too) is reported by a :class:`FailureLog` and retried."""

    async def once() -> None:
        if status is not None:
            refresh_gauges(metrics, await status())
        metrics.refresh_process_gauges()

    failures = FailureLog(log, "refreshing the metric gauges", retry_every_s=tick_s)
    await _every(tick_s, once, failures, sleep)


async def _every(
    tick_s: float, once: Callable[[], Awaitable[None]], failures: FailureLog, sleep: Sleep
) -> None:
    """Run ``once`` every ``tick_s`` until cancelled; a failure is ``failures``' to report (one
    line per kind) and never ends the loop."""
    while True:
        try:
            await once()
            failures.succeeded()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures.failed(exc)
        await sleep(tick_s)
