"""Composition root of the HTTP gateway.

``create_app(config)`` builds everything the routes need from configuration: the upstream HTTP
client (the in-process emulator in zero-config mode), the library backend, the stores, the
governance steps and the image store. ``build_app(state)`` assembles the FastAPI app from those
collaborators; the middleware order is declared there, in exactly one list, outermost first.
``app_from_environ`` is the factory ``imagegate serve`` hands to uvicorn (one per worker).

Access without keys ("open mode") is decided once at start-up: when no admin key is configured
and the key store holds no key, the gateway serves anyone *only* when bound to a loopback
address, and says so loudly; bound elsewhere it refuses to start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import Scope

from imagegate import __version__
from imagegate.api import AsyncImageGate
from imagegate.catalog import Catalog
from imagegate.config import ImageGateConfig
from imagegate.config_load import load
from imagegate.errors import StorageError
from imagegate.policy.keys import DEFAULT_PEPPER
from imagegate.ports import AuditLog, BlobStore, BudgetLedger, IdempotencyStore, KeyStore, Ledger, RateLimiter
from imagegate.server.deployments import run_gateway_prober, run_gauge_refresher, status_source
from imagegate.server.errors import install_error_handlers
from imagegate.server.failure_log import FailureLog
from imagegate.server.gc_tuning import tune_collector
from imagegate.server.governance import Governance
from imagegate.server.heap import keep_large_blocks
from imagegate.server.library import LibraryBackend
from imagegate.server.logconfig import configure_logging
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    ErrorMiddleware,
    RequestIdMiddleware,
)
from imagegate.server.preflight import is_loopback, open_mode_refused
from imagegate.server.routes import admin, files, images, ops
from imagegate.server.routes.files import IMAGE_ROUTE
from imagegate.server.service import IDEMPOTENCY_LEASE_S, ImageService
from imagegate.server.settings import ServerLimits, ServerSettings, settings_from_environ
from imagegate.server.state import GatewayState, ModelEntry, ReadinessCheck
from imagegate.stores.blobs import LocalBlobStore
from imagegate.stores.maintenance import sweep
from imagegate.stores.ratelimit import KeyRateLimiter, rate_limiter_for
from imagegate.stores.writebehind import WriteBehind

if TYPE_CHECKING:
    from imagegate.stores.sql import SqlStores

__all__ = ["app_from_environ", "build_app", "create_app", "models_of"]

log = logging.getLogger("imagegate.server")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _body_limit(limits: ServerLimits) -> Callable[[Scope], int]:
    def limit_for(scope: Scope) -> int:
        for key, value in scope.get("headers", []):
            if key == b"content-type":
                if bytes(value).lower().startswith(b"multipart/"):
                    return limits.max_multipart_bytes
                break
        return limits.max_json_body_bytes

    return limit_for


def build_app(state: GatewayState, *, lifespan: Lifespan | None = None) -> FastAPI:
    """A gateway app over ``state``; every app has its own metrics registry."""
    if not state.created_unix:
        state.created_unix = int(time.time())
    m = state.metrics

    def observe(route: str, method: str, status: int, duration_s: float) -> None:
        m.observe_request(route=route, method=method, status=status, duration_s=duration_s)

    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(AccessLogMiddleware, observe=observe),
        Middleware(ErrorMiddleware),
        Middleware(
            BodySizeLimitMiddleware,
            limit_for=_body_limit(state.limits),
            timeout_s=state.limits.body_timeout_s,
        ),
    ]
    app = FastAPI(
        title="imagegate",
        version=__version__,
        summary="An OpenAI- and Azure-compatible gateway for image generation.",
        middleware=middleware,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(images.router)  # first: the routes nearly every request matches
    app.include_router(ops.router)
    app.include_router(files.router)
    app.include_router(admin.router)
    return app


def models_of(config: ImageGateConfig) -> tuple[ModelEntry, ...]:
    """Every name a client may pass as ``model``: logical groups first, then deployment names,
    then the catalog models the deployments serve (``ImageGateConfig.deployments_for`` order)."""
    return tuple(ModelEntry(n) for n in config.model_names())


def create_app(
    config: ImageGateConfig | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    settings: ServerSettings | None = None,
    catalog: Catalog | None = None,
    keys: KeyStore | None = None,
    budgets: BudgetLedger | None = None,
    ledger: Ledger | None = None,
    idempotency: IdempotencyStore | None = None,
    audit: AuditLog | None = None,
    rates: RateLimiter | None = None,
    blobs: BlobStore | None = None,
    bind_host: str = "127.0.0.1",
    open_access: bool | None = None,
) -> FastAPI:
    """The gateway for ``config`` (zero config when ``None``).

    Stores default to in-process ones (``imagegate.stores.memory``). ``http_client`` is the
    upstream client, handed to ``AsyncImageGate`` (default: the in-process emulator when the
    config is emulated, else a pooled ``httpx.AsyncClient``); only a client it made is closed.
    ``open_access``: ``None`` decides at start-up (see the module docstring), ``True`` serves
    without keys from the start (in-process tests), ``False`` always requires a key.
    """
    from imagegate.stores.memory import MemoryStores

    config = config or load(None, {})
    settings = settings or ServerSettings()
    memory = MemoryStores()
    if blobs is None:
        blobs = LocalBlobStore(
            settings.data_dir / "images",
            url_secret=settings.url_secret or os.urandom(32),
            base_url=f"{settings.public_url.rstrip('/')}{IMAGE_ROUTE}",
        )
    limiter = rates or rate_limiter_for(settings.redis_url)
    gate = AsyncImageGate(
        config,
        http_client=http_client,
        catalog=catalog,
        sleep=sleep or anyio.sleep,
        clock=clock,  # None: AsyncImageGate picks monotonic, or wall time for shared state
    )
    governance = Governance(
        keys=None if open_access else (keys or memory.keys),
        rates=limiter,
        budgets=budgets or memory.budgets,
        ledger=ledger or memory.ledger,
        audit=audit or memory.audit,
        default_model=config.default_model,
        prompt_retention=settings.audit_prompts,
    )
    metrics = GatewayMetrics(shared_routing_state=config.routing_state.backend == "redis")
    service = ImageService(
        backend=LibraryBackend(gate),
        governance=governance,
        metrics=metrics,
        url_ttl_s=settings.url_ttl_s,
        default_model=config.default_model,
        blobs=blobs,
        idempotency=idempotency or memory.idempotency,
        idempotency_lease_s=max(IDEMPOTENCY_LEASE_S, config.retry.deadline_s + 300.0),
    )
    models = models_of(config)

    async def stores_ready() -> str | None:
        store = service.idempotency
        if store is not None:
            await store.get("readyz", "readyz")  # one indexed lookup: the database answers
        return None

    async def images_ready() -> str | None:
        if isinstance(blobs, LocalBlobStore):
            root = settings.data_dir / "images"
            await anyio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
            if not os.access(root, os.W_OK):
                return f"{root} is not writable"
        return None

    state = GatewayState(
        readiness={"stores": stores_ready, "images": images_ready, **_redis_checks(gate, limiter, settings)},
        limits=settings.limits,
        metrics=metrics,
        models=lambda: models,
        images=service,
        admin_key=settings.admin_key,
        deployment_status=status_source(gate),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sql = await _open_sql(settings, governance, service) if settings.database_url else None
        # Ledger and audit writes are queued and batched (off the event loop's per-request
        # path); readers in this process go through the same objects, so they flush first.
        writer = (
            _write_behind(
                sql, governance, metrics, settings, clock=clock or time.monotonic, sleep=sleep or anyio.sleep
            )
            if sql is not None
            else None
        )
        try:
            if open_access is None:
                await _decide_access(governance, settings, bind_host)
            tasks = _start_background(gate, state, settings, sleep or anyio.sleep)
            # Holds left by a process that died before settling, expired idempotency keys: at
            # start-up, then every few minutes. A hold is stale only once it is older than any
            # request can run (the idempotency lease), so a live request is never released.
            sweeps = FailureLog(log, "the housekeeping sweep", retry_every_s=SWEEP_INTERVAL_S)
            await _sweep_once(governance, service, sweeps)
            # (on real time: a test's injected sleep drives the prober's ticks, which it counts)
            sweeper = _sweep_forever(governance, service, sweeps)
            tasks.add(asyncio.create_task(sweeper, name="imagegate-sweeper"))
            try:
                yield
            finally:
                await _stop(tasks)
        finally:
            metrics.forget_this_process()
            await _drain(service, writer, settings.ledger_drain_s)
            await gate.aclose()
            if isinstance(limiter, KeyRateLimiter):
                await limiter.aclose()
            if sql is not None:
                await sql.aclose()

    return build_app(state, lifespan=lifespan)


def _redis_checks(
    gate: AsyncImageGate, limiter: RateLimiter, settings: ServerSettings
) -> dict[str, ReadinessCheck]:
    """Readiness of what lives in Redis, when it does: every image request reads the routing
    state, and a key with an rpm the rate-limit store, so either one down is every such request
    a 503 ``storage_error``."""
    checks: dict[str, ReadinessCheck] = {}
    if gate.config.routing_state.backend == "redis" and gate.scheduler.deployment_names:
        first = gate.scheduler.deployment_names[0]

        async def routing_ready() -> str | None:
            try:
                await gate.scheduler.store.read(first)
            except StorageError as exc:
                return exc.message
            return None

        checks["routing"] = routing_ready
    if settings.redis_url and isinstance(limiter, KeyRateLimiter):
        checks["rate_limits"] = limiter.ready
    return checks


def _start_background(
    gate: AsyncImageGate,
    state: GatewayState,
    settings: ServerSettings,
    sleep: Callable[[float], Awaitable[None]],
) -> set[asyncio.Task[None]]:
    """The active prober, and with several worker processes the gauge refresher."""
    tasks = set()
    if settings.probe_tick_s > 0:
        prober = run_gateway_prober(gate, tick_s=settings.probe_tick_s, sleep=sleep)
        tasks.add(asyncio.create_task(prober, name="imagegate-prober"))
    if state.metrics.multiprocess_dir is not None:  # see server.metrics
        refresher = run_gauge_refresher(state.metrics, state.deployment_status, sleep=sleep)
        tasks.add(asyncio.create_task(refresher, name="imagegate-gauges"))
    return tasks


async def _stop(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        # wait() (not ``await task``) so a task's own CancelledError is not mistaken for, or
        # swallowed as, a cancellation of the shutdown itself
        await asyncio.wait(tasks)


async def _drain(service: ImageService, writer: WriteBehind | None, drain_s: float) -> None:
    """The ledger's part of a shutdown, within ``drain_s``. uvicorn runs the lifespan shutdown at
    once after cancelling the requests its graceful shutdown no longer waits for: they are still
    settling their holds and recording themselves, and their rows must be queued before the
    write-behind closes; then every queued row is written (``serve --timeout-graceful-shutdown``)."""
    drain_by = time.monotonic() + drain_s
    running = await service.wait_idle(drain_s)
    if running:
        log.warning("imagegate: %d image request(s) still running at shutdown may be unrecorded", running)
    if writer is not None:  # every queued row reaches the database before it closes
        await writer.aclose(timeout_s=max(0.0, drain_by - time.monotonic()))


SWEEP_INTERVAL_S = 300.0


async def _sweep_once(governance: Governance, service: ImageService, failures: FailureLog) -> None:
    if governance.budgets is None or service.idempotency is None:
        return
    try:
        report = await sweep(
            governance.budgets,
            service.idempotency,
            governance.now(),
            hold_max_age_s=service.idempotency_lease_s,
        )
    except Exception as exc:  # the database may be down for now: the next round tries again
        failures.failed(exc)
        return
    failures.succeeded()
    if report.released_holds:
        log.warning(
            "imagegate: released %d budget hold(s) left by requests that never settled", report.released_holds
        )


async def _sweep_forever(governance: Governance, service: ImageService, failures: FailureLog) -> None:
    while True:
        await anyio.sleep(SWEEP_INTERVAL_S)
        await _sweep_once(governance, service, failures)


async def _open_sql(settings: ServerSettings, governance: Governance, service: ImageService) -> SqlStores:
    """The embedded default (SQLite under the data directory) or PostgreSQL, migrated to head."""
    from imagegate.stores.sql import open_sql_stores

    assert settings.database_url is not None
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    pepper = settings.key_pepper.encode() if settings.key_pepper else DEFAULT_PEPPER
    stores = await open_sql_stores(settings.database_url, pepper=pepper)
    if governance.keys is not None:  # None: open mode was asked for (``open_access=True``)
        governance.keys = stores.keys
    governance.budgets = stores.budgets
    governance.ledger = stores.ledger
    governance.audit = stores.audit
    service.idempotency = stores.idempotency
    return stores


def _write_behind(
    sql: SqlStores,
    governance: Governance,
    metrics: GatewayMetrics,
    settings: ServerSettings,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> WriteBehind:
    """The SQL ledger and audit log behind a write-behind recorder, wired into governance (and
    so into the admin API, which reads and writes through it). In-memory stores need none: an
    append costs less than queueing it."""
    writer = WriteBehind(
        sql.ledger,
        sql.audit,
        max_batch=settings.ledger_batch_rows,
        flush_interval_s=settings.ledger_flush_s,
        max_buffered=settings.ledger_max_pending,
        clock=clock,
        sleep=sleep,
        on_drop=metrics.observe_ledger_drop,
    )
    governance.ledger = writer.ledger
    governance.audit = writer.audit
    metrics.track_ledger_pending(lambda: writer.pending)
    return writer


async def _decide_access(governance: Governance, settings: ServerSettings, bind_host: str) -> None:
    """Open mode iff no admin key and no virtual key exist; allowed on loopback only."""
    keys = governance.keys
    if keys is None or settings.admin_key is not None or await keys.list():
        return
    if not is_loopback(bind_host):
        raise open_mode_refused(bind_host)
    governance.keys = None
    log.warning(
        "imagegate: OPEN MODE - no admin key and no virtual keys, so requests are not authenticated. "
        "This is allowed only on loopback (%s). Set IMAGEGATE_ADMIN_KEY to require keys.",
        bind_host,
    )


def app_from_environ(environ: Mapping[str, str] | None = None) -> FastAPI:
    """The uvicorn factory: configuration and server settings from the environment, once."""
    env: Mapping[str, Any] = os.environ if environ is None else environ
    configure_logging(env.get("IMAGEGATE_LOG_LEVEL", "info"))
    keep_large_blocks(env)
    config = load(None, env)
    settings = settings_from_environ(env)
    app = create_app(config, settings=settings, bind_host=env.get("IMAGEGATE_BIND_HOST", "127.0.0.1"))
    tune_collector(env)
    return app
