"""Prometheus metrics for one gateway app, in a registry of its own.

A registry per app (not prometheus-client's global one) so tests can build many apps in one
process and each ``/metrics`` shows only its own app. Labels are low-cardinality and never carry
secrets: route templates (not raw paths), model and deployment names, outcome words, key *ids*.

Several worker processes (``imagegate serve --workers N``) share one port, so a scrape reaches
one of them at random. There ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start: prometheus-client then keeps every value in a per-process file in that directory, and
``render`` merges the files of all workers, so any scrape shows the whole gateway. Counters and
histograms are summed. Gauges say how: requests in flight and queued, ledger rows pending are
summed over the live workers; routing's gauges are read from routing state, which with
``routing_state: {backend: redis}`` every worker shares (the most recent reading is shown) and
otherwise each worker keeps its own (breaker: the worst state any worker sees, headroom: the
least, effective rpm and upstream requests in flight: the sum). A gauge a process only sets when
asked (routing's, the ledger's queue) is refreshed by each worker every ``GAUGE_REFRESH_S``
(``server.deployments.run_gauge_refresher``) and by the one serving the scrape.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from imagegate.errors import RateLimited

__all__ = ["BREAKER_STATES", "CONTENT_TYPE_LATEST", "GAUGE_REFRESH_S", "GatewayMetrics", "multiprocess_dir"]

GAUGE_REFRESH_S = 5.0
"""How often each worker refreshes the gauges it sets only when asked (multiprocess mode)."""


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode when it is on in this process
    (decided when prometheus-client was imported, from ``PROMETHEUS_MULTIPROC_DIR``)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


# Buckets suited to image generation: from cache hits (ms) to slow high-quality images (minutes).
_LATENCY_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300)
_WAIT_BUCKETS_S = (0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120)

_Labelled = Counter | Gauge | Histogram
_Mode = Literal["livemostrecent", "livemax", "livemin", "livesum"]

BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass
class GatewayMetrics:
    """All gateway metrics; ``render()`` is the body of ``GET /metrics``."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    shared_routing_state: bool = False  # routing state in Redis: every worker reads the same
    multiprocess_dir: str | None = field(default_factory=multiprocess_dir)

    def __post_init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._ledger_pending: Callable[[], int] | None = None
        r = self.registry
        # how each gauge is merged over worker processes (multiprocess mode only)
        shared = self.shared_routing_state
        breaker: _Mode = "livemostrecent" if shared else "livemax"
        headroom: _Mode = "livemostrecent" if shared else "livemin"
        summed: _Mode = "livemostrecent" if shared else "livesum"
        self.requests = Counter(
            "imagegate_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "imagegate_request_duration_seconds",
            "Time from request to the last response byte, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.images = Counter(
            "imagegate_images",
            "Images returned to clients, by model and operation.",
            ["model", "operation"],
            registry=r,
        )
        self.cost = Counter(
            "imagegate_cost_usd",
            "Cost of served requests in US dollars (estimated where usage was missing).",
            ["model", "deployment"],
            registry=r,
        )
        self.upstream_attempts = Counter(
            "imagegate_upstream_attempts",
            "Upstream attempts, by deployment and outcome (ok, rate_limited, server_error, timeout, ...).",
            ["deployment", "outcome"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "imagegate_upstream_duration_seconds",
            "Time of one upstream attempt, by deployment.",
            ["deployment"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.rate_limited = Counter(
            "imagegate_rate_limited",
            "429s, by source: 'key' (a virtual key's rpm refused the request), 'budget' (its "
            "budget did), 'upstream' (an upstream attempt Azure answered 429).",
            ["source"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "imagegate_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            registry=r,
            multiprocess_mode=breaker,
        )
        self.quota_wait = Histogram(
            "imagegate_quota_wait_seconds",
            "Time a request waited for deployment quota before being sent.",
            ["deployment"],
            buckets=_WAIT_BUCKETS_S,
            registry=r,
        )
        self.quota_headroom = Gauge(
            "imagegate_quota_headroom",
            "Share of a deployment's request quota free now (0..1; 1 without a configured quota).",
            ["deployment"],
            registry=r,
            multiprocess_mode=headroom,
        )
        self.effective_rpm = Gauge(
            "imagegate_quota_effective_rpm",
            "Requests per minute routing currently allows a deployment (learnt from 429s and headers).",
            ["deployment"],
            registry=r,
            multiprocess_mode=summed,
        )
        self.deployment_in_flight = Gauge(
            "imagegate_deployment_in_flight",
            "Upstream attempts in flight on a deployment.",
            ["deployment"],
            registry=r,
            multiprocess_mode=summed,
        )
        self.queued = Gauge(
            "imagegate_requests_queued",
            "Requests waiting for deployment capacity right now.",
            registry=r,
            multiprocess_mode="livesum",  # each process queues its own
        )
        self.in_flight = Gauge(
            "imagegate_requests_in_flight",
            "Image requests being served right now (until sent in full, or the client left, and recorded).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ledger_pending = Gauge(
            "imagegate_ledger_pending_rows",
            "Ledger and audit rows queued by the write-behind recorder, not yet in the database.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ledger_dropped = Counter(
            "imagegate_ledger_dropped_rows",
            "Ledger/audit rows the write-behind recorder dropped, by table and reason: 'overflow' "
            "(buffer full while the database failed), 'invalid' (the store refused the row), "
            "'shutdown' (still failing when the drain timed out).",
            ["table", "reason"],
            registry=r,
        )

    # Small typed recorders so callers don't juggle label order. Each labelled child is looked
    # up once and kept: ``labels()`` validates, joins and locks on every call (~1 % of the
    # gateway's CPU per image request, for the seven observations each one makes).

    def _child(self, metric: _Labelled, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_request(self, *, route: str, method: str, status: int, duration_s: float) -> None:
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.request_latency, route).observe(duration_s)

    def observe_images(self, *, model: str, operation: str, count: int) -> None:
        if count > 0:
            self._child(self.images, model, operation).inc(count)

    def observe_cost(self, *, model: str, deployment: str, usd: Decimal) -> None:
        if usd > 0:
            self._child(self.cost, model, deployment).inc(float(usd))

    def observe_attempt(self, *, deployment: str, outcome: str, duration_s: float | None = None) -> None:
        self._child(self.upstream_attempts, deployment, outcome).inc()
        if duration_s is not None:
            self._child(self.upstream_latency, deployment).observe(duration_s)
        if outcome == RateLimited.code:
            self._child(self.rate_limited, "upstream").inc()

    def observe_breaker(self, *, deployment: str, state: str) -> None:
        self._child(self.breaker_state, deployment).set(BREAKER_STATES.get(state, -1.0))

    def observe_quota(
        self, *, deployment: str, headroom: float, effective_rpm: float | None, in_flight: int
    ) -> None:
        self._child(self.quota_headroom, deployment).set(headroom)
        if effective_rpm is not None:
            self._child(self.effective_rpm, deployment).set(effective_rpm)
        self._child(self.deployment_in_flight, deployment).set(in_flight)

    def observe_quota_wait(self, *, deployment: str, wait_s: float) -> None:
        self._child(self.quota_wait, deployment).observe(wait_s)

    def observe_ledger_drop(self, table: str, reason: str, rows: int) -> None:
        self.ledger_dropped.labels(table, reason).inc(rows)

    def track_ledger_pending(self, pending: Callable[[], int]) -> None:
        """``imagegate_ledger_pending_rows`` is ``pending()``: read at each scrape in one process;
        in multiprocess mode set by :meth:`refresh_process_gauges` (a scrape reads files)."""
        if self.multiprocess_dir is None:
            self.ledger_pending.set_function(pending)
        else:
            self._ledger_pending = pending

    def refresh_process_gauges(self) -> None:
        """Write what only this process knows into its gauges (multiprocess mode), and forget
        the live gauges of worker processes that are gone (a crashed worker's requests in
        flight must not stay in the sum)."""
        if self.multiprocess_dir is None:
            return
        if self._ledger_pending is not None:
            self.ledger_pending.set(self._ledger_pending())
        for path in glob.glob(os.path.join(self.multiprocess_dir, "gauge_live*_*.db")):
            pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def forget_this_process(self) -> None:
        """At a worker's shutdown: its live gauges leave the sums (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self.refresh_process_gauges()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
