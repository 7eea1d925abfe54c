"""The stages of the request path. Each is thin: read the context, call a policy, write back.

A stage is ``async (ctx, call_next) -> ImageResult``. It short-circuits by returning without
calling ``call_next`` or by raising an error from the tree; it never returns "maybe" values.
Retries, fail-over and timeouts are not stages: they happen per attempt inside the upstream
client (the terminal stage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from imagegate.catalog import Catalog
from imagegate.config import ImageGateConfig
from imagegate.errors import NoDeploymentAvailable
from imagegate.pipeline.context import RequestContext
from imagegate.policy.pricing import cost_of
from imagegate.policy.validation import validate
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
        dialect = "openai" if first.kind == "openai" else f"azure-{first.route}"
        checked = validate(ctx.request, spec, self._catalog, translate=ctx.translate, dialect=dialect)
        ctx.request, ctx.spec, ctx.changes = checked.request, checked.spec, checked.changes
        return await call_next(ctx)


class RouteStage:
    """The plan: the candidates serving the validated model, in configured order. (Ranking by
    health, quota and cost, and cross-model fallback with ``policy.translate``, plug in here.)"""

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        model = ctx.spec.name if ctx.spec else None
        ctx.plan = tuple(d for d in ctx.candidates if d.model == model)
        if not ctx.plan:
            raise NoDeploymentAvailable(f"no deployment serves model {model!r}")
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
        return replace(result, cost=cost, changes=ctx.changes)


class UpstreamStage:
    """Terminal: hand the plan to the attempt loop."""

    def __init__(self, upstream: UpstreamClient) -> None:
        self._upstream = upstream

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        return await self._upstream.send(ctx.plan, ctx.request, on_partial=ctx.on_partial, hooks=ctx.hooks)
