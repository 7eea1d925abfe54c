"""The stages of the request path. Each is thin: read the context, call a policy, write back.

A stage is ``async (ctx, call_next) -> ImageResult``. It short-circuits by returning without
calling ``call_next`` or by raising an error from the tree; it never returns "maybe" values.
Retries, fail-over and timeouts are not stages: they happen per attempt inside the upstream
client (the terminal stage).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from imagegate.catalog import Catalog
from imagegate.config import ImageGateConfig
from imagegate.errors import NoDeploymentAvailable
from imagegate.pipeline.context import RequestContext
from imagegate.policy.fallback import dialect_of
from imagegate.policy.pricing import cost_of
from imagegate.policy.validation import validate
from imagegate.routing.hooks import RoutingHooks
from imagegate.routing.scheduler import Scheduler
from imagegate.types import ImageResult
from imagegate.upstream.client import UpstreamClient

__all__ = ["CostStage", "Next", "RouteStage", "Stage", "UpstreamStage", "ValidateStage"]

Next = Callable[[RequestContext], Awaitable[ImageResult]]


class Stage(Protocol):
    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult: ...


class ValidateStage:
    """Resolve the requested model to candidate deployments and validate (or translate) the
    request for the model of the first one. Raises ``InvalidRequest``: nothing is sent."""

    def __init__(self, config: ImageGateConfig, catalog: Catalog) -> None:
        self._config = config
        self._catalog = catalog

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        ctx.candidates = self._config.deployments_for(ctx.request.model)
        if not ctx.candidates:
            raise NoDeploymentAvailable("no deployment is configured")
        first = ctx.candidates[0]
        spec = self._catalog.get(first.model)
        checked = validate(
            ctx.request, spec, self._catalog, translate=ctx.translate, dialect=dialect_of(first)
        )
        ctx.request, ctx.spec, ctx.changes = checked.request, checked.spec, checked.changes
        return await call_next(ctx)


class RouteStage:
    """The plan: the candidates serving the validated model. Without a scheduler, in configured
    order; with one (``imagegate.routing``), ranked by the group's strategy after filtering by
    region, breaker and capability, and each attempt is admitted by breaker and quota through
    ``ctx.hooks``, until the request's deadline. Cross-model fallback runs before this stage
    (``pipeline.fallback``), which calls it once per model and call."""

    def __init__(
        self,
        config: ImageGateConfig | None = None,
        scheduler: Scheduler | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._clock = clock

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        model = ctx.spec.name if ctx.spec else None
        ctx.plan = tuple(d for d in ctx.candidates if d.model == model)
        if not ctx.plan:
            raise NoDeploymentAvailable(f"no deployment serves model {model!r}")
        if self._scheduler is not None and self._config is not None:
            group = ctx.request.model or self._config.default_model
            # the quality the upstream will make (its default when none was asked for): latency is
            # learnt and looked up per quality, and the fallback stage's deadline check reads it
            quality = ctx.request.quality or (ctx.spec.default_quality if ctx.spec else None)
            ranked = await self._scheduler.plan(group, ctx.plan, quality=quality)
            if not ranked.ranked:
                why = "; ".join(f"{e.name}: {e.reason}" for e in ranked.excluded)
                raise NoDeploymentAvailable(
                    f"no deployment can serve {group!r} now ({why})",
                    retry_after_s=ranked.retry_after_s(self._clock()),
                )
            by_name = {d.name: d for d in ctx.plan}
            ctx.plan = tuple(by_name[n] for n in ranked.names)
            deadline = (
                ctx.deadline if ctx.deadline is not None else self._clock() + self._config.retry.deadline_s
            )
            ctx.hooks = RoutingHooks(self._scheduler, group, deadline=deadline, quality=quality)
        return await call_next(ctx)


class CostStage:
    """After the upstream answered: price the result from its usage (or the per-image table)."""

    def __init__(self, config: ImageGateConfig, catalog: Catalog) -> None:
        self._config = config
        self._catalog = catalog

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        result = await call_next(ctx)
        dep = self._config.deployment(result.deployment)
        cost = cost_of(
            self._catalog.get(result.model),
            usage=result.usage,
            size=ctx.request.size,
            quality=ctx.request.quality,
            images=len(result.images),
            prompt=ctx.request.prompt,
            override=dep.price_override,
        )
        attempts = result.attempts
        if attempts and attempts[-1].outcome == "ok":  # what this call's attempt made and cost
            last = replace(attempts[-1], images=len(result.images), cost_usd=cost.usd)
            attempts = (*attempts[:-1], last)
        return replace(result, cost=cost, changes=ctx.changes, attempts=attempts)


class UpstreamStage:
    """Terminal: hand the plan to the attempt loop."""

    def __init__(self, upstream: UpstreamClient) -> None:
        self._upstream = upstream

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        return await self._upstream.send(
            ctx.plan, ctx.request, on_partial=ctx.on_partial, hooks=ctx.hooks, deadline=ctx.deadline
        )
